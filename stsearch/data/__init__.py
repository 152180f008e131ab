"""Datasets for search trials: embedded (digits, mnist5k), local torchvision sets (CIFAR, MNIST, SVHN, ...),
image folders, synthetic, and the user's own (``register_dataset``, import paths); loaders."""

from .base import ArrayDataset, DatasetInfo
from .datasets import DATASETS, DatasetRef, dataset_meta, list_datasets, load_dataset, parse_dataset_ref
from .loaders import make_loaders
from .synthetic import load_synthetic
from .user import register_dataset

__all__ = ["ArrayDataset", "DatasetInfo", "DATASETS", "DatasetRef", "dataset_meta", "list_datasets", "load_dataset",
           "load_synthetic", "make_loaders", "parse_dataset_ref", "register_dataset"]

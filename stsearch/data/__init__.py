"""Datasets for search trials: embedded (digits, mnist5k), local CIFAR, synthetic; loaders."""

from .base import ArrayDataset, DatasetInfo
from .datasets import DATASETS, dataset_meta, list_datasets, load_dataset
from .loaders import make_loaders
from .synthetic import load_synthetic

__all__ = ["ArrayDataset", "DatasetInfo", "DATASETS", "dataset_meta", "list_datasets", "load_dataset", "load_synthetic", "make_loaders"]

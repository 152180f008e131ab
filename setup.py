"""Packages of stsearch (the rest of the metadata is in pyproject.toml).

The shipped search spaces stay in the repository's top-level ``search_spaces/`` folder; they are
installed as the package data ``stsearch.search_spaces`` (found by ``stsearch.space.space_dir``).
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["stsearch", "stsearch.*"]), "stsearch.search_spaces"],
    package_dir={"stsearch.search_spaces": "search_spaces"},
)

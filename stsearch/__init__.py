"""stsearch: search of networks compressed with semi-tensor-product decompositions."""

__version__ = "0.1.0"


def load(path: "str | os.PathLike[str]", *, fold: bool = False) -> "torch.nn.Module":  # noqa: F821  (lazy import)
    """The compressed model of an export folder or a trial folder (see :func:`stsearch.export.load`);
    ``fold=True``: dense-mode layers hold their rebuilt weights, as in the exported program."""
    from .export import load as _load

    return _load(path, fold=fold)


def __getattr__(name: str):  # the Python API, loaded on first use (``import stsearch`` stays light)
    if name == "Search":
        from .api import Search

        return Search
    raise AttributeError(f"module 'stsearch' has no attribute {name!r}")

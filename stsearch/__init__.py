"""stsearch: search of networks compressed with semi-tensor-product decompositions."""

__version__ = "0.1.0"


def load(path: "str | os.PathLike[str]") -> "torch.nn.Module":  # noqa: F821  (lazy: importing stsearch stays cheap)
    """The compressed model of an export folder or a trial folder (see :func:`stsearch.export.load`)."""
    from .export import load as _load

    return _load(path)

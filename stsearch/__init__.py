"""stsearch: search of networks compressed with semi-tensor-product decompositions."""

__version__ = "0.1.0"

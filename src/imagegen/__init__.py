"""imagegen: a self-hostable image-generation API over many providers."""

__version__ = "0.1.0"

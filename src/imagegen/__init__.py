"""imagegen: a self-hostable image-generation API over many providers."""

from imagegen import httpx_cli

__version__ = "0.1.0"

httpx_cli.defer()  # before anything imports httpx: see httpx_cli.py

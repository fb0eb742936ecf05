"""The HTTP edge: the seed API, generations history, images and health."""

"""Zarr stores: chunked, resumable, atomically published; the layouts of every store."""

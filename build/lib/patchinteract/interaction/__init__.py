"""Patch interactions (Ma et al. eq. 2-3): U and the DIP score, per batch and as a Dask stage."""

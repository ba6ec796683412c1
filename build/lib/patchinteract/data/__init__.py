"""Datasets: sources of images and the manifest that lists them."""

"""Report: the result tables and the figures' plotting functions."""

"""Attention of the baseline: capture during forward passes and the attention store."""

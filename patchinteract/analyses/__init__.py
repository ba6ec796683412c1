"""Companion analyses on the same stores: head importance, attention strength and patterns (heads/,
Li et al., TVCG 2023) and the SIFT-keypoint semantics of attention (semantics/, Wu et al.)."""

"""Masks from U (Ma et al.): windows (AWD), kept tokens (DIP), responsive fields, and their stores."""

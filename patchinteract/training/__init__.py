"""Training and evaluation, and the retraining branches (ViT, AWD, AWD+DIP, WinFT)."""

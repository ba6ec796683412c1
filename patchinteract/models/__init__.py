"""Models: timm ViTs, their weights and transforms, and Ma et al.'s masked ViT (AWD, DIP) and WinFT."""

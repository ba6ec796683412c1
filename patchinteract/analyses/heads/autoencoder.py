"""The pattern autoencoder (Li et al., TVCG 2023, Sec. 5.4.2): trained on every head's binarised patch
matrix (:func:`patchinteract.analyses.heads.patterns.binarised_matrices`); its bottleneck codes are
what the patch-pattern t-SNE lays out."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from patchinteract.analyses.heads.patterns import binarised_matrices


class PatternAutoencoder(nn.Module):
    """Two strided convolutions and one fully connected layer on each side (Sec. 5.4.2).

    Input: binarised matrices (batch, 1, N, N) with ``ones`` entries set. ``forward`` returns the
    reconstruction loss (what :func:`patchinteract.training.loop.reconstruction` trains); :meth:`encode`
    gives the codes. The loss is binary cross-entropy with the ones weighted by
    (N² - ones) / ones, so that ones and zeros weigh the same in total: unweighted, a 1 % share of ones
    lets an almost constant reconstruction win, and the codes no longer tell the patterns apart.
    """

    def __init__(self, n_patches: int, code_size: int, ones: int, channels: tuple[int, int] = (8, 16)):
        super().__init__()
        self.n_patches = n_patches
        self.register_buffer("positive_weight", torch.tensor((n_patches * n_patches - ones) / ones))
        self.side = math.ceil(math.ceil(n_patches / 2) / 2)  # after two stride-2 convolutions
        c1, c2 = channels
        flat = c2 * self.side * self.side
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c1, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(flat, code_size),
        )
        self.decoder = nn.Sequential(
            nn.Linear(code_size, flat),
            nn.ReLU(),
            nn.Unflatten(1, (c2, self.side, self.side)),
            nn.ConvTranspose2d(c2, c1, 3, stride=2, padding=1, output_padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(c1, 1, 3, stride=2, padding=1, output_padding=1),
        )

    def encode(self, matrices: torch.Tensor) -> torch.Tensor:
        return self.encoder(matrices)

    def reconstruction_logits(self, matrices: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(matrices))[..., : self.n_patches, : self.n_patches]

    def forward(self, matrices: torch.Tensor) -> torch.Tensor:
        logits = self.reconstruction_logits(matrices).float()
        return F.binary_cross_entropy_with_logits(logits, matrices.float(), pos_weight=self.positive_weight)


class BinarisedPatterns(torch.utils.data.Dataset):
    """Every head's binarised matrix as a training sample (matrix (1, N, N), index), expanded on access."""

    def __init__(self, top: np.ndarray, n_patches: int):
        self.top = top.reshape(-1, top.shape[-1])
        self.n_patches = n_patches

    def __len__(self) -> int:
        return len(self.top)

    def __getitem__(self, index: int):
        return torch.from_numpy(binarised_matrices(self.top[index], self.n_patches))[None], index


@torch.no_grad()
def encode_patterns(model: PatternAutoencoder, patterns: BinarisedPatterns, device, batch_size: int) -> np.ndarray:
    """Bottleneck codes (samples, code_size) of every binarised matrix, in order."""
    model.to(device).eval()
    loader = torch.utils.data.DataLoader(patterns, batch_size=batch_size)
    return np.concatenate([model.encode(matrices.to(device)).float().cpu().numpy() for matrices, _ in loader])


def train_pattern_autoencoder(
    top: np.ndarray,
    n_patches: int,
    settings: dict,
    *,
    seed: int,
    device,
    workers: int = 0,
    checkpoint=None,
    fingerprint: str = "",
) -> tuple[PatternAutoencoder, np.ndarray, dict]:
    """Train the autoencoder on every head's binarised matrix (``top``: (…, count) top entries) with the
    project's training loop (seeded, checkpointed, resumable); returns (model, codes (…, code_size), summary).

    ``settings``: heads.autoencoder (code_size, epochs, batch_size, lr).
    """
    from patchinteract.training.loop import Recipe, reconstruction, seed_everything, train_model

    seed_everything(seed)
    patterns = BinarisedPatterns(top, n_patches)
    model = PatternAutoencoder(n_patches, settings["code_size"], ones=top.shape[-1])
    recipe = Recipe.from_config({key: settings[key] for key in ("epochs", "lr", "batch_size")} | {"optimizer": "adamw"})
    summary = train_model(
        model,
        patterns,
        recipe,
        device,
        seed=seed,
        workers=workers,
        checkpoint=checkpoint,
        fingerprint=fingerprint,
        objective=reconstruction,
    )
    codes = encode_patterns(model, patterns, device, settings["batch_size"])
    return model, codes.reshape(*top.shape[:-1], -1), summary | {"samples": len(patterns)}

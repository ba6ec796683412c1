"""One training run, the same for the baseline and every retrained branch: manifest → model →
initial weights → training (resumable) → saved weights."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from patchinteract.data.manifest import number_of_classes, read_manifest
from patchinteract.models.transforms import batch_normalization
from patchinteract.models.vit import build_model
from patchinteract.models.weights import load_weights, save_weights
from patchinteract.ranks import Ranks
from patchinteract.runtime import Execution
from patchinteract.training.loop import Recipe, seed_everything, train_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StartingWeights:
    """Starting weights (None: timm's random init). Only the baseline's own weights keep their head;
    any other start (hub weights, a file) gets a fresh head for the dataset's classes."""

    weights: str | None = None
    keep_head: bool = False


@dataclass(frozen=True)
class TrainingRun:
    """Everything one run reads: the model settings (grid.model_settings), the manifest, the
    recipe, the seed, how it runs, where it checkpoints (resumed only under the same fingerprint)
    and where the trained ViT's weights go."""

    model: dict
    manifest: str
    recipe: Recipe
    seed: int
    execution: Execution
    checkpoint: str
    fingerprint: str
    weights: str

    def build_vit(self, init: StartingWeights, attn_layer: type | None = None) -> nn.Module:
        """The run's ViT from its starting weights (``attn_layer``: the attention layer its blocks use). Everything
        is seeded first, so that each random draw after it (the ViT's, a model's around it, the samples') is
        the run's own."""
        seed_everything(self.seed)
        table, _root = read_manifest(self.manifest)
        vit = build_model(self.model, number_of_classes(table), attn_layer)
        if init.weights:
            for note in load_weights(vit, init.weights, skip_head=not init.keep_head):
                log.info("%s: %s", init.weights, note)
            log.info("initialised from %s%s", init.weights, "" if init.keep_head else " (fresh head)")
        return vit

    def train(
        self,
        vit: nn.Module,
        model: nn.Module,
        dataset: torch.utils.data.Dataset,
        objective: Callable[[nn.Module, list[torch.Tensor]], torch.Tensor] | None = None,
        after_epoch: Callable[[nn.Module, int], dict] | None = None,
    ) -> dict:
        """Train ``model`` (``vit`` itself, or a model around it: masks, WinFT, an MAE) on ``dataset``, whose
        images are uint8 (:func:`patchinteract.models.transforms.train_transform`), normalised per batch, by
        ``objective`` (default: :class:`~patchinteract.training.loop.TrainingLoop`'s, a classifier's); save the
        ViT's weights.

        Returns the training summary with the number of train images.
        """
        summary = train_model(
            model,
            dataset,
            self.recipe,
            Ranks.current().device(self.execution.device),
            seed=self.seed,
            workers=self.execution.loader_workers,
            checkpoint=self.checkpoint,
            fingerprint=self.fingerprint,
            objective=objective,
            normalize=batch_normalization(vit),
            after_epoch=after_epoch,
        )
        if Ranks.current().main:
            save_weights(vit, self.weights)
        return summary | {"train_images": len(dataset)}

    def discard_checkpoint(self) -> None:
        """Once the outputs are written: the checkpoint only served to resume."""
        Path(self.checkpoint).unlink(missing_ok=True)

"""Evaluation: per-image predictions over a loader, and the top-1/top-5 they give."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from patchinteract.training.loop import autocast

PREDICTION_COLUMNS = ["image_id", "label", "prediction", "correct", "p_true", "top5"]


def top1_percent(correct: np.ndarray) -> float:
    """Top-1 in percent from per-image correctness: the value every metrics.json holds."""
    return 100.0 * int(np.count_nonzero(correct)) / len(correct)


class Predictions:
    """Per-image predictions accumulated over batches: image_id, label, prediction (top-1 class), correct,
    p_true (softmax probability of the true class) and top5 (the best min(5, classes) classes, best first)."""

    def __init__(self):
        self.batches: list[dict[str, np.ndarray]] = []
        self.num_classes = 0

    def update(self, logits: torch.Tensor, labels: torch.Tensor, image_ids) -> None:
        logits = logits.float()
        self.num_classes = logits.shape[-1]
        top = logits.topk(min(5, self.num_classes), dim=-1).indices
        p_true = logits.softmax(dim=-1).gather(1, labels[:, None].to(logits.device))[:, 0]
        labels = labels.to(top.device)
        self.batches.append({
            "image_id": np.asarray(image_ids), "label": labels.cpu().numpy(), "prediction": top[:, 0].cpu().numpy(),
            "correct": (top[:, 0] == labels).cpu().numpy(), "p_true": p_true.cpu().numpy(), "top5": top.cpu().numpy(),
        })  # fmt: skip

    def columns(self) -> dict[str, np.ndarray]:
        if not self.batches:
            raise ValueError("evaluation split is empty")
        return {name: np.concatenate([batch[name] for batch in self.batches]) for name in PREDICTION_COLUMNS}

    def table(self) -> pd.DataFrame:
        """One row per image in loader order (top5 a list column)."""
        columns = self.columns()
        return pd.DataFrame(columns | {"top5": list(columns["top5"])})

    def metrics(self) -> dict:
        """top1, top5 (None with 5 classes or fewer) in percent and n_images, from the per-image rows."""
        columns = self.columns()
        in_top5 = (columns["top5"] == columns["label"][:, None]).any(axis=1)
        top5 = top1_percent(in_top5) if self.num_classes > 5 else None
        return {"top1": top1_percent(columns["correct"]), "top5": top5, "n_images": len(columns["correct"])}


@torch.no_grad()
def evaluate_classifier(
    model: torch.nn.Module, loader: torch.utils.data.DataLoader, device: torch.device
) -> tuple[dict, pd.DataFrame]:
    """(metrics, per-image predictions) over the whole loader: top-1 (and top-5 when there are more than
    5 classes) in percent, and :class:`Predictions`' table.

    ``loader`` yields (images, labels, image_ids, *masks); the model is called as ``model(images, *masks)``.
    """
    model.to(device).eval()
    predictions = Predictions()
    for images, labels, image_ids, *masks in tqdm(loader, desc="evaluate", unit="batch", mininterval=5):
        with autocast(device):
            logits = model(images.to(device), *(m.to(device) for m in masks))
        predictions.update(logits, labels.to(device), image_ids)
    return predictions.metrics(), predictions.table()

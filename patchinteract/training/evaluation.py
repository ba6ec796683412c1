"""Evaluation: per-image predictions over a loader, the top-1/top-5 they give, and for WinFT its predicted
windows against the responsive fields."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from patchinteract.models.winft import WindowFreeViT, window_interaction_count, window_iou, window_target
from patchinteract.ranks import Ranks, gathered
from patchinteract.runtime import autocast

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
        self.batches.append(
            {
                "image_id": np.asarray(image_ids),
                "label": labels.cpu().numpy(),
                "prediction": top[:, 0].cpu().numpy(),
                "correct": (top[:, 0] == labels).cpu().numpy(),
                "p_true": p_true.cpu().numpy(),
                "top5": top.cpu().numpy(),
            }
        )

    def gather(self) -> None:
        """Under several ranks, each of which predicted a consecutive block of the images: every rank's
        batches, in rank order (the order of one process)."""
        parts = gathered((self.batches, self.num_classes))
        self.batches = [batch for batches, _ in parts for batch in batches]
        self.num_classes = max(classes for _, classes in parts)

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


class WindowRecorder:
    """WinFT's windows over an evaluation: E_O (mean over images of window_interaction_count), the mean
    IoU of the predicted windows W and the ground truth w_gt, and the per-layer windows and ground truth
    of the first ``keep_first`` images (Fig. 10): 'predicted' (image, layer, N, N), 'target' (image, N, N),
    'image_id'."""

    def __init__(self, model: WindowFreeViT, keep_first: int = 0):
        self.model, self.keep_first = model, keep_first
        self.counts, self.ious = [], []
        self.kept = {"predicted": [], "target": [], "image_id": []}

    def update(self, target: torch.Tensor, image_ids) -> None:
        """After the model's forward over a batch whose responsive fields are ``target``."""
        windows = self.model.last_windows
        truth = window_target(target, self.model.grid, self.model.target_kind)
        self.counts.append(window_interaction_count(windows).cpu())
        self.ious.append(window_iou(windows, truth).cpu())
        room = self.keep_first - sum(len(ids) for ids in self.kept["image_id"])
        if room > 0:
            self.kept["predicted"].append(torch.stack(windows, dim=1)[:room].cpu())
            self.kept["target"].append(truth[:room].cpu())
            self.kept["image_id"].append(image_ids[:room])

    def gather(self) -> None:
        """Under several ranks: every rank's windows in rank order, the first ``keep_first`` images kept."""
        if Ranks.current().world == 1:
            return
        parts = gathered((self.counts, self.ious, self.kept))
        self.counts = [count for counts, _, _ in parts for count in counts]
        self.ious = [iou for _, ious, _ in parts for iou in ious]
        kept = {name: [part for _, _, rank_kept in parts for part in rank_kept[name]] for name in self.kept}
        if kept["predicted"]:
            images = self.keep_first
            self.kept = {
                "predicted": [torch.cat(kept["predicted"])[:images]],
                "target": [torch.cat(kept["target"])[:images]],
                "image_id": [torch.cat([torch.as_tensor(ids) for ids in kept["image_id"]])[:images]],
            }

    def metrics(self) -> dict:
        n = self.model.grid[0] * self.model.grid[1]
        empty = {"predicted": (0, len(self.model.layers), n, n), "target": (0, n, n), "image_id": (0,)}
        figure = {
            name: torch.cat(parts).numpy() if parts else np.zeros(empty[name], int if name == "image_id" else bool)
            for name, parts in self.kept.items()
        }
        return {
            "eo": float(torch.cat(self.counts).mean()),
            "window_iou": float(torch.cat(self.ious).mean()),
            "figure": figure,
        }


@torch.no_grad()
def evaluate_classifier(
    model: torch.nn.Module,
    loader: torch.utils.data.DataLoader,
    device: torch.device,
    windows: WindowRecorder | None = None,
) -> tuple[dict, pd.DataFrame]:
    """(metrics, per-image predictions) over the whole loader: top-1 (and top-5 when there are more than
    5 classes) in percent, and :class:`Predictions`' table.

    ``loader`` yields (images, labels, image_ids, *masks); the model is called as ``model(images, *masks)``,
    or with ``windows`` (WinFT, which predicts its windows) as ``model(images)``, the masks being the
    ground truth the recorder compares with; its metrics join the top-1/top-5.
    """
    model.to(device).eval()
    predictions = Predictions()
    for images, labels, image_ids, *masks in tqdm(loader, desc="evaluate", unit="batch", mininterval=5):
        masks = [m.to(device) for m in masks]
        with autocast(device):
            logits = model(images.to(device)) if windows else model(images.to(device), *masks)
        predictions.update(logits, labels.to(device), image_ids)
        if windows:
            windows.update(*masks, image_ids)
    predictions.gather()
    if windows:
        windows.gather()
    return predictions.metrics() | (windows.metrics() if windows else {}), predictions.table()


def evaluate_windows(model: WindowFreeViT, loader, device: torch.device, keep_first: int = 0):
    """WinFT's evaluation: :func:`evaluate_classifier` with a :class:`WindowRecorder` of ``keep_first`` images;
    the metrics hold ``eo``, ``window_iou`` and ``figure`` beside top-1/top-5."""
    return evaluate_classifier(model, loader, device, WindowRecorder(model, keep_first))

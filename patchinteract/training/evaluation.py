"""Evaluation: top-1/top-5 accuracy over a loader."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from patchinteract.training.loop import autocast


class TopKAccuracy:
    """Top-1 (and top-5 when there are more than 5 classes) in percent, accumulated over batches."""

    def __init__(self):
        self.correct1 = self.correct5 = self.total = 0
        self.num_classes = 0

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.num_classes = logits.shape[-1]
        top = logits.float().topk(min(5, self.num_classes), dim=-1).indices
        self.correct1 += (top[:, 0] == labels).sum().item()
        self.correct5 += (top == labels[:, None]).any(dim=-1).sum().item()
        self.total += labels.numel()

    def result(self) -> dict:
        if self.total == 0:
            raise ValueError("evaluation split is empty")
        metrics = {"top1": 100.0 * self.correct1 / self.total, "n_images": self.total}
        metrics["top5"] = 100.0 * self.correct5 / self.total if self.num_classes > 5 else None
        return metrics


@torch.no_grad()
def evaluate_classifier(model: torch.nn.Module, loader: torch.utils.data.DataLoader, device: torch.device) -> dict:
    """Top-1 (and top-5 when there are more than 5 classes) in percent, over the whole loader.

    ``loader`` yields (images, labels, image_ids, *masks); the model is called as ``model(images, *masks)``.
    """
    model.to(device).eval()
    accuracy = TopKAccuracy()
    for images, labels, _ids, *masks in tqdm(loader, desc="evaluate", unit="batch", mininterval=5):
        with autocast(device):
            logits = model(images.to(device), *(m.to(device) for m in masks))
        accuracy.update(logits, labels.to(device))
    return accuracy.result()

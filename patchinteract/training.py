"""Training recipe (optimizer, warm-up + cosine schedule, accumulation) and evaluation."""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    """One training run's settings; every field is a config key of ``train_baseline``."""

    epochs: int
    lr: float
    batch_size: int
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    accumulation_steps: int = 1
    warmup_steps: int = 0
    crop_scale: tuple[float, float] = (0.08, 1.0)
    hflip: bool = True
    label_smoothing: float = 0.0

    @classmethod
    def from_config(cls, settings: dict) -> Recipe:
        known = {k: v for k, v in settings.items() if k in cls.__dataclass_fields__}
        if "crop_scale" in known:
            known["crop_scale"] = tuple(known["crop_scale"])
        return cls(**known)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a generator for data order."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def warmup_cosine_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Learning-rate multiplier: linear warm-up to 1, then cosine decay to 0."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: torch.nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    # No weight decay on biases, norms, position embeddings and tokens (timm's convention).
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        no_decay_param = parameter.ndim <= 1 or name.endswith(("pos_embed", "cls_token", "reg_token"))
        (no_decay if no_decay_param else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=recipe.lr)
    raise ValueError(f"unknown optimizer '{recipe.optimizer}' (sgd | adamw)")


def autocast(device: torch.device):
    """bf16 autocast on CUDA; full precision on CPU (bf16 matmul on CPU is slow and changes results)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def train_classifier(
    model: torch.nn.Module,
    loader: torch.utils.data.DataLoader,
    recipe: Recipe,
    device: torch.device,
) -> dict:
    """Train ``model`` in place with ``recipe``; returns {'steps', 'train_seconds', 'final_loss'}."""
    model.to(device).train()
    optimizer = make_optimizer(model, recipe)
    steps_per_epoch = math.ceil(len(loader) / recipe.accumulation_steps)
    total_steps = steps_per_epoch * recipe.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine_factor(step, total_steps, recipe.warmup_steps)
    )
    step, start, running_loss = 0, time.perf_counter(), float("nan")
    progress = tqdm(total=total_steps, desc="train", unit="step", mininterval=5)
    for epoch in range(recipe.epochs):
        optimizer.zero_grad(set_to_none=True)
        for batch_index, (images, labels, _ids) in enumerate(loader):
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            with autocast(device):
                loss = F.cross_entropy(model(images), labels, label_smoothing=recipe.label_smoothing)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss.item()} at epoch {epoch}, step {step}")
            (loss / recipe.accumulation_steps).backward()
            running_loss = loss.item() if math.isnan(running_loss) else 0.9 * running_loss + 0.1 * loss.item()
            last_in_epoch = batch_index + 1 == len(loader)
            if (batch_index + 1) % recipe.accumulation_steps == 0 or last_in_epoch:
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                progress.update(1)
                progress.set_postfix(
                    epoch=epoch, loss=f"{running_loss:.3f}", lr=f"{schedule.get_last_lr()[0]:.2e}", refresh=False
                )
        log.info("epoch %d/%d: loss %.4f", epoch + 1, recipe.epochs, running_loss)
    progress.close()
    return {"steps": step, "train_seconds": time.perf_counter() - start, "final_loss": running_loss}


@torch.no_grad()
def evaluate_classifier(model: torch.nn.Module, loader: torch.utils.data.DataLoader, device: torch.device) -> dict:
    """Top-1 (and top-5 when there are more than 5 classes) in percent, over the whole loader."""
    model.to(device).eval()
    correct1 = correct5 = total = 0
    num_classes = None
    for images, labels, _ids in tqdm(loader, desc="evaluate", unit="batch", mininterval=5):
        images, labels = images.to(device), labels.to(device)
        with autocast(device):
            logits = model(images)
        num_classes = logits.shape[-1]
        top = logits.float().topk(min(5, num_classes), dim=-1).indices
        correct1 += (top[:, 0] == labels).sum().item()
        correct5 += (top == labels[:, None]).any(dim=-1).sum().item()
        total += labels.numel()
    if total == 0:
        raise ValueError("evaluation split is empty")
    metrics = {"top1": 100.0 * correct1 / total, "n_images": total}
    metrics["top5"] = 100.0 * correct5 / total if num_classes > 5 else None
    return metrics

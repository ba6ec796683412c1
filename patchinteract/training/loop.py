"""Training: the recipe (optimizer, warm-up + cosine schedule, accumulation), seeded data order,
checkpoints that resume exactly, and SIGTERM handling."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from patchinteract.runtime import autocast
from patchinteract.schema import definition_defaults

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    """One training run's settings; every field is a key of the config's recipes (``train_baseline``,
    ``retrain.recipe``), whose defaults the schema states."""

    epochs: int
    lr: float
    batch_size: int
    optimizer: str
    momentum: float
    weight_decay: float
    accumulation_steps: int
    warmup_steps: int
    crop_scale: tuple[float, float]
    hflip: bool
    label_smoothing: float

    @classmethod
    def from_config(cls, settings: dict) -> Recipe:
        """The recipe of a config section; keys it leaves out take the schema's defaults."""
        values = definition_defaults("recipe") | settings
        missing = sorted(set(cls.__dataclass_fields__) - set(values))
        if missing:
            raise ValueError(f"training recipe: {', '.join(missing)} not given (the schema has no default)")
        known = {name: values[name] for name in cls.__dataclass_fields__}
        return cls(**known | {"crop_scale": tuple(known["crop_scale"])})


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (model initialisation); data order has its own seeding (EpochOrder)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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
    # fused: one kernel for every parameter (CPU and CUDA); the demo's AdamW step took 2.4 ms per-parameter, 0.4 fused
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, fused=True)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=recipe.lr, fused=True)
    raise ValueError(f"unknown optimizer '{recipe.optimizer}' (sgd | adamw)")


def training_loss(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    masks: list[torch.Tensor],
    loss_weights: tuple[float, float] = (1.0, 1.0),
    label_smoothing: float = 0.0,
    mixed_precision: bool | None = None,
) -> torch.Tensor:
    """Loss of one batch (inputs on the device): λ1·CE + λ2·auxiliary (eq. 13), forward under autocast.

    The model is called as ``model(images, *masks)`` and returns logits, or
    (logits, auxiliary loss); the auxiliary loss (WinFT's BCE) computes its own
    precision. ``mixed_precision`` None: bf16 autocast on CUDA only (:func:`autocast`).
    """
    with autocast(images.device, mixed_precision):
        output = model(images, *masks)
        logits, auxiliary = output if isinstance(output, tuple) else (output, None)
        # Logits None: a model without classification (the pattern autoencoder), its loss auxiliary only.
        loss = (
            0.0
            if logits is None
            else loss_weights[0] * F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
        )
    if auxiliary is not None:
        loss = loss + loss_weights[1] * auxiliary
    return loss


class TrainingInterrupted(RuntimeError):
    """Training stopped on request (SIGTERM); a checkpoint to resume from was saved."""


@contextlib.contextmanager
def stop_on_sigterm():
    """Yield a callable that turns true once SIGTERM arrived (what Slurm sends at time-out or preemption)."""
    received = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield received.is_set
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: received.set())
    try:
        yield received.is_set
    finally:
        signal.signal(signal.SIGTERM, previous)


class EpochOrder(torch.utils.data.Sampler):
    """(epoch, index) keys of one epoch, in a permutation fixed by (seed, epoch), from a given batch on."""

    def __init__(self, size: int, batch_size: int, seed: int, drop_last: bool):
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.batches = size // batch_size if drop_last else math.ceil(size / batch_size)
        self.epoch, self.first_batch = 0, 0

    def start(self, epoch: int, first_batch: int) -> None:
        self.epoch, self.first_batch = epoch, first_batch

    def __iter__(self):
        generator = torch.Generator().manual_seed(
            int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0])
        )
        order = torch.randperm(self.size, generator=generator)
        for index in order[self.first_batch * self.batch_size : self.batches * self.batch_size].tolist():
            yield self.epoch, index

    def __len__(self) -> int:
        return (self.batches - self.first_batch) * self.batch_size


class SeededSamples(torch.utils.data.Dataset):
    """Sample (epoch, index) of ``dataset`` with its random augmentation seeded by (seed, epoch, index).

    The data a run sees is then a pure function of the seed: a resumed run
    sees exactly what an uninterrupted one would, whatever the worker count.
    """

    def __init__(self, dataset: torch.utils.data.Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def _seeded_sample(self, epoch: int, index: int):
        # The CPU generator only (what CPU-side augmentation draws from): torch.manual_seed would
        # also queue a lazy seed for every accelerator backend, ~0.2 ms per sample.
        torch.default_generator.manual_seed(int(np.random.SeedSequence([self.seed, epoch, index]).generate_state(1)[0]))
        return self.dataset[index]

    def __getitem__(self, key):
        with torch.random.fork_rng(devices=[]):
            return self._seeded_sample(*key)

    def __getitems__(self, keys):
        # What the DataLoader calls for a batch: the generator's state is saved and restored once per
        # batch, not per sample; each sample is still seeded by its own key, so the data are the same.
        with torch.random.fork_rng(devices=[]):
            return [self._seeded_sample(*key) for key in keys]


def save_checkpoint(path: Path, state: dict) -> None:
    """Write atomically: a kill during the write leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)


def train_classifier(
    model: torch.nn.Module,
    dataset: torch.utils.data.Dataset,
    recipe: Recipe,
    device: torch.device,
    *,
    seed: int,
    workers: int = 0,
    checkpoint: Path | str | None = None,
    fingerprint: str = "",
    loss_weights: tuple[float, float] = (1.0, 1.0),
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict:
    """Train ``model`` in place; returns {'steps', 'train_seconds', 'final_loss', 'resumed_from_step'}.

    ``dataset`` yields (image, label, image_id, *masks); the model is called as
    ``model(images, *masks)`` and returns logits, or (logits or None, auxiliary loss);
    the loss is then λ1·CE + λ2·auxiliary with (λ1, λ2) = ``loss_weights`` (eq. 13).
    ``normalize``, if given, turns each batch of images into the model's input on the device.
    A checkpoint (model, optimizer, schedule, step, position in the epoch, RNG
    state, ``fingerprint``) is written after every epoch and when SIGTERM
    arrives; then TrainingInterrupted is raised. A later call with the same
    checkpoint and fingerprint resumes, and on CPU ends with the same weights
    as an uninterrupted run.
    """
    checkpoint = Path(checkpoint) if checkpoint else None
    model.to(device).train()
    optimizer = make_optimizer(model, recipe)
    drop_last = len(dataset) > recipe.batch_size
    order = EpochOrder(len(dataset), recipe.batch_size, seed, drop_last)
    steps_per_epoch = math.ceil(order.batches / recipe.accumulation_steps)
    total_steps = steps_per_epoch * recipe.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine_factor(step, total_steps, recipe.warmup_steps)
    )
    position = {"epoch": 0, "batch": 0, "step": 0, "loss": float("nan"), "seconds": 0.0}
    if checkpoint and checkpoint.is_file():
        # On CPU: the RNG state must stay a CPU tensor; parameters are copied to the device.
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if state["fingerprint"] == fingerprint:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            torch.set_rng_state(state["torch_rng"])
            position = state["position"]
            log.info("resuming from %s at step %d (epoch %d, batch %d)", checkpoint, position["step"],
                     position["epoch"], position["batch"])  # fmt: skip
        else:
            log.warning("ignoring %s: written for other settings", checkpoint)
    resumed_from, resumed_seconds = position["step"], position["seconds"]

    def save():
        if checkpoint:
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
            }
            save_checkpoint(checkpoint, state | {"torch_rng": torch.get_rng_state(), "position": dict(position),
                                                 "fingerprint": fingerprint})  # fmt: skip

    loader = torch.utils.data.DataLoader(
        SeededSamples(dataset, seed), batch_size=recipe.batch_size, sampler=order, num_workers=workers,
        drop_last=drop_last, pin_memory=device.type == "cuda",
    )  # fmt: skip
    progress = tqdm(total=total_steps, initial=position["step"], desc="train", unit="step", mininterval=5)
    start = time.perf_counter() - position["seconds"]
    with stop_on_sigterm() as stop_requested:
        for epoch in range(position["epoch"], recipe.epochs):
            order.start(epoch, position["batch"] if epoch == position["epoch"] else 0)
            optimizer.zero_grad(set_to_none=True)
            for batch_index, (images, labels, _ids, *masks) in enumerate(loader, start=order.first_batch):
                images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
                if normalize is not None:
                    images = normalize(images)
                masks = [m.to(device, non_blocking=True) for m in masks]
                loss = training_loss(model, images, labels, masks, loss_weights, recipe.label_smoothing)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"training loss became {loss.item()} at epoch {epoch}, step {position['step']}"
                    )
                (loss / recipe.accumulation_steps).backward()
                value = loss.item()
                position["loss"] = value if math.isnan(position["loss"]) else 0.9 * position["loss"] + 0.1 * value
                if (batch_index + 1) % recipe.accumulation_steps and batch_index + 1 != order.batches:
                    continue
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                position.update(step=position["step"] + 1, epoch=epoch, batch=batch_index + 1)
                position["seconds"] = time.perf_counter() - start
                progress.update(1)
                images_seen = (position["step"] - resumed_from) * recipe.batch_size * recipe.accumulation_steps
                throughput = images_seen / max(1e-9, position["seconds"] - resumed_seconds)
                progress.set_postfix(epoch=epoch, loss=f"{position['loss']:.3f}", lr=f"{schedule.get_last_lr()[0]:.2e}",
                                     img_per_s=f"{throughput:.0f}", refresh=False)  # fmt: skip
                if stop_requested():
                    save()
                    progress.close()
                    raise TrainingInterrupted(f"SIGTERM at step {position['step']}; checkpoint {checkpoint}")
            position.update(epoch=epoch + 1, batch=0, seconds=time.perf_counter() - start)
            save()
            log.info("epoch %d/%d: loss %.4f", epoch + 1, recipe.epochs, position["loss"])
    progress.close()
    return {
        "steps": position["step"],
        "train_seconds": position["seconds"],
        "final_loss": position["loss"],
        "resumed_from_step": resumed_from,
    }

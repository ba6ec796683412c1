"""Training: the recipe (optimizer, warm-up + cosine schedule, accumulation), seeded data order,
checkpoints that resume exactly, the stop before the job's time limit, and SIGTERM handling."""

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

from patchinteract.ranks import Ranks, all_mean, any_rank
from patchinteract.runtime import autocast
from patchinteract.schema import definition_defaults
from patchinteract.training.deadline import Deadline, testing_delay

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
    # fused: one kernel for every parameter, on CPU and CUDA (docs/scaling.md)
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
    """A classifier's loss of one batch (inputs on the device): λ1·CE + λ2·auxiliary (eq. 13), forward under
    autocast.

    The model is called as ``model(images, *masks)`` and returns logits, or
    (logits, auxiliary loss); the auxiliary loss (WinFT's BCE) computes its own
    precision. ``mixed_precision`` None: bf16 autocast on CUDA only (:func:`autocast`).
    """
    with autocast(images.device, mixed_precision):
        output = model(images, *masks)
        logits, auxiliary = output if isinstance(output, tuple) else (output, None)
        loss = loss_weights[0] * F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    if auxiliary is not None:
        loss = loss + loss_weights[1] * auxiliary
    return loss


@dataclass(frozen=True)
class Classification:
    """What a classifier learns from a batch (images, labels, sample ids, *masks) on the device: λ1·CE +
    λ2·auxiliary (:func:`training_loss`; a ViT branch, WinFT)."""

    loss_weights: tuple[float, float] = (1.0, 1.0)
    label_smoothing: float = 0.0

    def __call__(self, model: torch.nn.Module, batch: list[torch.Tensor]) -> torch.Tensor:
        images, labels, _ids, *masks = batch
        return training_loss(model, images, labels, masks, self.loss_weights, self.label_smoothing)


def reconstruction(model: torch.nn.Module, batch: list[torch.Tensor]) -> torch.Tensor:
    """What a model that learns without labels learns from a batch (inputs, sample ids, *masks) on the device:
    its own loss, ``model(inputs, *masks)`` under autocast (an MAE, the pattern autoencoder)."""
    inputs, _ids, *masks = batch
    with autocast(inputs.device):
        return model(inputs, *masks)


def preserved_rng(device: torch.device):
    """A context that restores torch's random state (CPU, and the CUDA device's) when it exits."""
    return torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else [])


class TrainingInterrupted(RuntimeError):
    """Training stopped before the job's time limit or on request (SIGTERM); a checkpoint to resume from was
    saved."""


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


class EpochSamples(torch.utils.data.Dataset):
    """A dataset whose samples depend on the epoch as well (MAE's masks follow a curriculum over rounds):
    the training loop asks it for ``sample(epoch, index)``."""

    def sample(self, epoch: int, index: int):
        raise NotImplementedError

    def __getitem__(self, index: int):
        return self.sample(0, index)


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
        if isinstance(self.dataset, EpochSamples):
            return self.dataset.sample(epoch, index)
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
    time.sleep(testing_delay("CHECKPOINT"))  # tests: as slow as a large checkpoint on a shared file system
    os.replace(temporary, path)


class CheckpointedState:
    """What a checkpoint holds: the model, its optimizer and learning-rate schedule, and where the run
    is (epoch, batch within it, optimizer step, smoothed loss, seconds trained)."""

    def __init__(self, model: torch.nn.Module, recipe: Recipe, total_steps: int):
        self.model = model
        self.optimizer = make_optimizer(model, recipe)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: warmup_cosine_factor(step, total_steps, recipe.warmup_steps)
        )
        self.position = {"epoch": 0, "batch": 0, "step": 0, "loss": float("nan"), "seconds": 0.0}

    def resume(self, checkpoint: Path | None, fingerprint: str) -> None:
        """Continue from ``checkpoint`` if it was written under the same ``fingerprint``."""
        if not (checkpoint and checkpoint.is_file()):
            return
        # On CPU: the RNG state must stay a CPU tensor; parameters are copied to the device.
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if state["fingerprint"] != fingerprint:
            log.warning("ignoring %s: written for other settings", checkpoint)
            return
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["torch_rng"])
        self.position = state["position"]
        log.info(
            "resuming from %s at step %d (epoch %d, batch %d)",
            checkpoint,
            self.position["step"],
            self.position["epoch"],
            self.position["batch"],
        )

    def save(self, checkpoint: Path | None, fingerprint: str) -> None:
        if checkpoint:
            save_checkpoint(
                checkpoint,
                {
                    "model": self.model.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "schedule": self.schedule.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                    "position": dict(self.position),
                    "fingerprint": fingerprint,
                },
            )


class RankShare(torch.utils.data.Sampler):
    """One rank's share of an :class:`EpochOrder`: of each global batch, the rank's consecutive part
    (equal parts; the ranks together see exactly the samples one process sees, batch for batch)."""

    def __init__(self, order: EpochOrder, ranks: Ranks):
        self.order, self.ranks = order, ranks

    def __iter__(self):
        keys, batch = list(self.order), self.order.batch_size
        share = batch // self.ranks.world
        for start in range(0, len(keys), batch):
            yield from keys[start + self.ranks.rank * share : start + (self.ranks.rank + 1) * share]

    def __len__(self) -> int:
        return len(self.order) // self.ranks.world


def check_rank_shares(samples: int, batch_size: int, ranks: int) -> None:
    """Several ranks split every batch equally, and need full batches."""
    if ranks == 1:
        return
    if batch_size % ranks:
        raise ValueError(f"batch_size {batch_size} does not split over {ranks} ranks: use a multiple of {ranks}")
    if samples <= batch_size:
        raise ValueError(f"{samples} training images are no more than one batch ({batch_size}): train on one rank")


def distributed(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` under DistributedDataParallel (gradients averaged over the ranks after each backward)."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


class TrainingLoop:
    """One run of the training loop: ``model`` learns from ``dataset`` with ``recipe`` on ``device``.

    ``objective(model, batch)`` is the loss of a batch of ``dataset``'s samples, moved to the device: a
    classifier's (:class:`Classification`, samples (image, label, image_id, *masks); by default with the
    recipe's label smoothing and weights (1, 1)) or a model's own
    (:func:`reconstruction`, samples (input, sample id, *masks)). ``normalize``, if given, turns each
    batch's first tensor (the images) into the model's input on the device.
    ``after_epoch(model, epoch)``, if given, returns a record of each finished epoch (MAE's k-NN monitor),
    and of the model as initialised (epoch −1) at a fresh start: the run's summary lists them under
    ``epochs``, each with the smoothed loss.
    A checkpoint (:class:`CheckpointedState`, RNG state and ``fingerprint``) is written after every
    epoch, when the job's time limit is near (:class:`~patchinteract.training.deadline.Deadline`: the next
    step and a checkpoint write would not fit) and when SIGTERM arrives; then TrainingInterrupted is
    raised. A later run with the same checkpoint and fingerprint resumes, and on CPU ends with the same
    weights as an uninterrupted run.

    Under several ranks (:mod:`patchinteract.ranks`) the model trains under DistributedDataParallel:
    each global batch of ``recipe.batch_size`` samples, in the order one process draws them, is split
    in equal consecutive shares over the ranks, so the ranks together take the steps one process takes
    (the effective batch stays the recipe's); rank 0 writes the checkpoints; SIGTERM on any rank stops
    every rank after the current step.
    """

    def __init__(
        self,
        model,
        dataset,
        recipe: Recipe,
        device: torch.device,
        *,
        seed: int,
        workers: int = 0,
        checkpoint: Path | str | None = None,
        fingerprint: str = "",
        objective: Callable[[torch.nn.Module, list[torch.Tensor]], torch.Tensor] | None = None,
        normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
        after_epoch: Callable[[torch.nn.Module, int], dict] | None = None,
    ):
        self.model, self.recipe, self.device = model, recipe, device
        self.after_epoch = after_epoch
        self.checkpoint, self.fingerprint = (Path(checkpoint) if checkpoint else None), fingerprint
        # default: a classifier's loss with the recipe's label smoothing
        self.objective = objective or Classification(label_smoothing=recipe.label_smoothing)
        self.normalize = normalize
        self.ranks = Ranks.current()
        check_rank_shares(len(dataset), recipe.batch_size, self.ranks.world)
        drop_last = len(dataset) > recipe.batch_size
        self.order = EpochOrder(len(dataset), recipe.batch_size, seed, drop_last)
        self.loader = torch.utils.data.DataLoader(
            SeededSamples(dataset, seed),
            batch_size=recipe.batch_size // self.ranks.world,
            sampler=self.order if self.ranks.world == 1 else RankShare(self.order, self.ranks),
            num_workers=workers,
            drop_last=drop_last,
            pin_memory=device.type == "cuda",
        )
        self.total_steps = math.ceil(self.order.batches / recipe.accumulation_steps) * recipe.epochs
        # a run without a checkpoint has nothing to stop for
        self.deadline = Deadline.of_this_job() if self.checkpoint else Deadline(None)
        self.step_delay = testing_delay("STEP")

    def run(self) -> dict:
        """Train in place; returns {'steps', 'train_seconds', 'final_loss', 'resumed_from_step'}."""
        self.model.to(self.device).train()
        self.trained = self.model if self.ranks.world == 1 else distributed(self.model, self.device)
        state = CheckpointedState(self.model, self.recipe, self.total_steps)
        state.resume(self.checkpoint, self.fingerprint)
        position = state.position
        self.resumed = {"step": position["step"], "seconds": position["seconds"]}
        self.step_losses = []  # the smoothed loss after each step of this call (what the progress bar shows)
        self.progress = tqdm(
            total=self.total_steps,
            initial=position["step"],
            desc="train",
            unit="step",
            mininterval=5,
            disable=not self.ranks.main,
        )
        self.start = time.perf_counter() - position["seconds"]
        with stop_on_sigterm() as stop_requested:
            if "epochs" not in position:  # a fresh start: the record of the model as initialised (epoch −1),
                with preserved_rng(self.device):  # leaving the random draws of training as without it
                    self.record_epoch(position, -1)
            for epoch in range(position["epoch"], self.recipe.epochs):
                self.order.start(epoch, position["batch"] if epoch == position["epoch"] else 0)
                self.epoch(state, epoch, stop_requested)
                position.update(epoch=epoch + 1, batch=0, seconds=time.perf_counter() - self.start)
                self.record_epoch(position, epoch)
                self.save(state)
                log.info("epoch %d/%d: loss %.4f", epoch + 1, self.recipe.epochs, position["loss"])
                if epoch + 1 < self.recipe.epochs:  # the epoch's end took a write (and its monitor) more
                    self.stop_if_asked(state, stop_requested, saved=True)
        self.progress.close()
        return {
            "steps": position["step"],
            "train_seconds": position["seconds"],
            "final_loss": position["loss"],
            "resumed_from_step": self.resumed["step"],
        } | ({"epochs": position["epochs"]} if self.after_epoch else {})

    def record_epoch(self, position: dict, epoch: int) -> None:
        """``after_epoch(model, epoch)``'s record (on every rank, the model in eval mode), kept in the
        checkpoint's position so that a resumed run returns the records of every epoch."""
        if self.after_epoch is None:
            return
        self.model.eval()
        record = self.after_epoch(self.model, epoch)
        self.model.train()
        position["epochs"] = [*position.get("epochs", []), record | {"loss": position["loss"]}]

    def epoch(self, state: CheckpointedState, epoch: int, stop_requested: Callable[[], bool]) -> None:
        """The rest of one epoch: a step every ``accumulation_steps`` batches (and at the epoch's end)."""
        state.optimizer.zero_grad(set_to_none=True)
        self.last_step = time.perf_counter()  # a step's time excludes the last epoch's checkpoint
        for batch_index, batch in enumerate(self.loader, start=self.order.first_batch):
            steps = not (batch_index + 1) % self.recipe.accumulation_steps or batch_index + 1 == self.order.batches
            # Gradients are summed over the ranks only in the batch that ends the step.
            with contextlib.nullcontext() if steps or self.ranks.world == 1 else self.trained.no_sync():
                self.accumulate(state, batch, epoch)
            if not steps:
                continue
            state.optimizer.step()
            state.schedule.step()
            state.optimizer.zero_grad(set_to_none=True)
            time.sleep(self.step_delay)
            state.position.update(step=state.position["step"] + 1, epoch=epoch, batch=batch_index + 1)
            self.step_losses.append(state.position["loss"])
            state.position["seconds"] = time.perf_counter() - self.start
            self.report(state, epoch)
            self.deadline.step_took(time.perf_counter() - self.last_step)
            measured = self.ranks.main and self.deadline.wants_a_measured_checkpoint
            if measured:
                self.save(state)  # how long a write takes, and a point to resume from early on
            self.stop_if_asked(state, stop_requested, saved=measured)
            self.last_step = time.perf_counter()

    def accumulate(self, state: CheckpointedState, batch, epoch: int) -> None:
        """Forward and backward of one batch; its loss joins the running (smoothed) loss."""
        inputs, *rest = (tensor.to(self.device, non_blocking=True) for tensor in batch)
        if self.normalize is not None:
            inputs = self.normalize(inputs)
        loss = self.objective(self.trained, [inputs, *rest])
        (loss / self.recipe.accumulation_steps).backward()
        value, running = all_mean(loss.item(), self.device), state.position["loss"]  # the global batch's loss
        if not math.isfinite(value):
            raise FloatingPointError(f"training loss became {value} at epoch {epoch}, step {state.position['step']}")
        state.position["loss"] = value if math.isnan(running) else 0.9 * running + 0.1 * value

    def stop_if_asked(self, state: CheckpointedState, stop_requested: Callable[[], bool], saved: bool) -> None:
        """Stop with a checkpoint (written unless ``saved``) when SIGTERM came or the job's time limit is near,
        on any rank: every rank raises TrainingInterrupted, which says why."""
        signalled, near = stop_requested(), self.deadline.reached()
        if not any_rank(signalled or near, self.device):
            return
        if not saved:
            self.save(state)
        self.progress.close()
        step = state.position["step"]
        if signalled:
            reason = f"SIGTERM at step {step}"
        elif near:  # said after the write: the time the job has left to end
            reason = f"time limit near: stopped at step {step}, {self.deadline.describe()}"
        else:
            reason = f"stopped at step {step} with another rank"
        raise TrainingInterrupted(f"{reason}; checkpoint {self.checkpoint}, from which a rerun resumes")

    def save(self, state: CheckpointedState) -> None:
        if self.ranks.main:
            start = time.perf_counter()
            state.save(self.checkpoint, self.fingerprint)
            if self.checkpoint:
                self.deadline.checkpoint_took(time.perf_counter() - start)

    def report(self, state: CheckpointedState, epoch: int) -> None:
        """The progress bar after a step: epoch, smoothed loss, learning rate, images per second."""
        position = state.position
        self.progress.update(1)
        images_seen = (
            (position["step"] - self.resumed["step"]) * self.recipe.batch_size * self.recipe.accumulation_steps
        )
        throughput = images_seen / max(1e-9, position["seconds"] - self.resumed["seconds"])
        self.progress.set_postfix(
            epoch=epoch,
            loss=f"{position['loss']:.3f}",
            lr=f"{state.schedule.get_last_lr()[0]:.2e}",
            img_per_s=f"{throughput:.0f}",
            refresh=False,
        )


def train_model(
    model: torch.nn.Module, dataset: torch.utils.data.Dataset, recipe: Recipe, device: torch.device, **options
) -> dict:
    """Train ``model`` in place (a ViT branch, WinFT, an MAE, the pattern autoencoder): :class:`TrainingLoop` (its
    options: seed, workers, checkpoint, fingerprint, objective, normalize, after_epoch).
    Returns {'steps', 'train_seconds', 'final_loss', 'resumed_from_step'}."""
    return TrainingLoop(model, dataset, recipe, device, **options).run()

"""One command that proves the GPU path: `make gpu-check`.

On the device it finds (CUDA if present), runs the training jobs' own code:
plain inference of a batch (the baseline of the next two), attention capture of
it into a Zarr store, the streaming U of the same batch (computed on the device),
the masks stage's stores from that U (windows, DIP keep flags, responsive fields),
then for every branch (vit, awd, awd_dip in both DIP modes, winft in both mask
modes), built and evaluated by ``patchinteract.training.branch_kinds`` as in
retraining, a few optimizer steps through ``training_loss`` (bf16 autocast on
CUDA) and one evaluation pass. Prints images/s per branch, each
branch's step time relative to the dense ViT, and peak GPU memory; any error or
non-finite loss ends it with a non-zero exit status. With several GPUs (or ``--ranks k``, gloo ranks
on a CPU-only machine) it also runs the vit branch's training step under DDP on 1 and on k ranks and
prints the images/s of each and their ratio.

On CUDA the model is ViT-B/16 at 224 with random weights; on a CPU-only machine
the same code runs a tiny ViT in float32 (tests/test_gpu_check.py runs it so).

    python benchmarks/gpu_check.py                 # what make gpu-check runs
    python benchmarks/gpu_check.py --batch 128 --steps 10 --out gpu_check.json
"""

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from common import RandomImages, remove, scratch_dir, vit_b16

from patchinteract.attention.extraction import write_attention_store, write_interaction_store_streaming
from patchinteract.masks.mask_stores import write_field_store, write_keep_store, write_window_store
from patchinteract.models.masked import MaskedViT
from patchinteract.models.vit import create_vit, patch_grid
from patchinteract.ranks import Ranks, launch
from patchinteract.runtime import select_device
from patchinteract.training.branch_kinds import branch_of
from patchinteract.training.loop import Recipe, distributed, make_optimizer, training_loss
from patchinteract.training.retraining import BranchSamples, load_mask_array

ALPHA, BETA = 0.1, 0.1
MASKED_VIT = {"cls_in_window": True, "dip_mode": "multiply"}
WINFT = {"target": "box", "ce_weight": 1.0, "bce_weight": 1.0, "figure_images": 0}
# (name in the report, the kind of branch and its settings, as the retraining jobs build it)
BRANCHES = [
    ("vit", "vit", MASKED_VIT),
    ("awd", "awd", MASKED_VIT),
    ("awd_dip multiply", "awd_dip", MASKED_VIT),
    ("awd_dip drop_keys", "awd_dip", MASKED_VIT | {"dip_mode": "drop_keys"}),
    ("winft multiply", "winft", WINFT | {"mask_mode": "multiply"}),
    ("winft neg_inf", "winft", WINFT | {"mask_mode": "neg_inf"}),
]


class LabelledImages(torch.utils.data.Dataset):
    """The check's batch as a split: (image, label, image id), and the ids the branches check masks against."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels, self.image_ids = images.cpu(), labels.cpu(), np.arange(len(images))

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.images[index], self.labels[index], int(self.image_ids[index])


def make_model(device: torch.device, attn_layer: type | None = None) -> torch.nn.Module:
    """ViT-B/16 at 224 on CUDA; a tiny ViT on CPU, so the check runs in seconds there (WinFT: its attention layer)."""
    layer = {"attn_layer": attn_layer} if attn_layer else {}
    if device.type == "cuda":
        return vit_b16(224, **layer)
    torch.manual_seed(0)
    return create_vit("VisionTransformer", 32, 8, 10, {"embed_dim": 32, "depth": 2, "num_heads": 2, **layer}).eval()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


@torch.no_grad()
def plain_inference(vit, images: RandomImages, device: torch.device) -> dict:
    """The baseline of the stages below: the same batch through the model with fused attention, nothing kept."""
    vit.to(device).eval()
    loader = torch.utils.data.DataLoader(images, batch_size=len(images))
    reset_peak_memory(device)
    start = time.perf_counter()
    for batch, _labels, _ids in loader:
        vit(batch.to(device))
    synchronize(device)
    return {"images_per_s": len(images) / (time.perf_counter() - start), "peak_gib": peak_memory_gib(device)}


def interaction_stages(vit, images: RandomImages, device: torch.device, scratch) -> tuple[dict, Path]:
    """Plain inference, attention capture and streaming U (on the model's device) of one batch, as the rules
    run them: (images/s of each, the interaction store)."""
    options = dict(device=device, batch_size=len(images), workers=0, compression_level=1, attributes={})
    plain_inference(vit, images, device)  # warm-up: kernels chosen
    rates = {"plain inference": plain_inference(vit, images, device)}
    for name, write, extra in (
        ("attention capture", write_attention_store, {"chunk_setting": "auto"}),
        ("streaming U", write_interaction_store_streaming, {}),
    ):
        reset_peak_memory(device)
        start = time.perf_counter()
        path = write(vit, images, scratch / f"{name.replace(' ', '_')}.zarr", **options, **extra)
        synchronize(device)
        rates[name] = {"images_per_s": len(images) / (time.perf_counter() - start), "peak_gib": peak_memory_gib(device)}
    return rates, Path(path)


def mask_stores(interaction: Path, scratch: Path) -> dict[str, Path]:
    """The masks stage's stores of the batch (window, keep, fields), which the branches read as in retraining."""
    keep = write_keep_store(interaction, scratch / "keep.zarr", BETA)
    return {
        "window": write_window_store(interaction, scratch / "window.zarr", ALPHA),
        "keep": keep,
        "fields": write_field_store(interaction, keep, scratch / "fields.zarr", ALPHA, BETA),
    }


def check_branch(name, branch, base_vit, images, labels, stores, device, steps, lr) -> dict:
    """A few optimizer steps and one evaluation pass of one branch; raises on a non-finite loss."""
    vit = copy.deepcopy(base_vit).to(device).train()
    model = branch.model(vit).to(device)
    optimizer = make_optimizer(model, Recipe.from_config({"epochs": 1, "lr": lr, "batch_size": len(images)}))
    split = LabelledImages(images, labels)
    masks = {
        array: load_mask_array(store, array, split.image_ids, branch.values)
        for array, store in branch.mask_arrays(stores).items()
    }
    batch_masks = [values.to(device) for values in masks.values()]
    reset_peak_memory(device)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = training_loss(model, images, labels, batch_masks, branch.loss_weights)  # bf16 autocast on CUDA
        if not torch.isfinite(loss):
            raise FloatingPointError(f"branch {name}: training loss is {loss.item()}")
        loss.backward()
        optimizer.step()
        return loss.item()

    step()  # warm-up: kernels chosen, memory allocated
    synchronize(device)
    start = time.perf_counter()
    losses = [step() for _ in range(steps)]
    synchronize(device)
    seconds = (time.perf_counter() - start) / steps
    loader = torch.utils.data.DataLoader(BranchSamples(split, masks, patch_grid(vit)), batch_size=len(images))
    rows, cols = patch_grid(vit)
    evaluation, _predictions, _figure = branch.evaluate(model, loader, device, stores, split.image_ids, rows * cols)
    return {
        "images_per_s": len(images) / seconds,
        "step_ms": 1000 * seconds,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "eval_top1": evaluation["top1"],
        "eval_eo": evaluation["eo"],
        "peak_gib": peak_memory_gib(device),
    }


def ranked_steps(device_setting: str, batch: int, steps: int, lr: float) -> dict:
    """On every rank: the vit branch's training steps under DDP, ``batch`` images per rank; rank 0 returns
    the images/s of all ranks together (each step is one global batch of ranks x batch images)."""
    ranks = Ranks.current()
    device = ranks.device(device_setting)
    model = MaskedViT(make_model(device).to(device)).to(device).train()
    trained = distributed(model, device) if ranks.world > 1 else model
    optimizer = make_optimizer(model, Recipe.from_config({"epochs": 1, "lr": lr, "batch_size": batch}))
    images = RandomImages(batch, model.vit.patch_embed.img_size[0], seed=ranks.rank).images.to(device)
    labels = torch.arange(batch, device=device) % model.vit.num_classes

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = training_loss(trained, images, labels, [])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{ranks.world} ranks: training loss is {loss.item()}")
        loss.backward()
        optimizer.step()

    step()  # warm-up
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return {"images_per_s": ranks.world * batch * steps / (time.perf_counter() - start)}


def rank_scaling(device: str, ranks: int, batch: int, steps: int, lr: float) -> dict:
    """images/s of the vit branch's training step on 1 and on ``ranks`` ranks, and their ratio."""
    one = launch(ranked_steps, 1, device, device, batch, steps, lr)
    several = launch(ranked_steps, ranks, device, device, batch, steps, lr)
    return {"1": one, str(ranks): several, "speed_up": several["images_per_s"] / one["images_per_s"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1")
    parser.add_argument("--batch", type=int, default=None, help="images per step (default: 64 on CUDA, 8 on CPU)")
    parser.add_argument("--steps", type=int, default=None, help="timed optimizer steps per branch (5 CUDA, 2 CPU)")
    parser.add_argument("--lr", type=float, default=0.01, help="SGD learning rate of the steps")
    parser.add_argument("--out", help="also write the figures as JSON here")
    parser.add_argument(
        "--ranks", type=int, default=None, help="ranks of the scaling check (default: the GPUs found, if more than one)"
    )
    args = parser.parse_args()
    device = select_device(args.device)
    cuda = device.type == "cuda"
    batch, steps = args.batch or (64 if cuda else 8), args.steps or (5 if cuda else 2)
    vit = make_model(device).to(device)
    size = vit.patch_embed.img_size[0]
    report = {
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "model": "vit_base_patch16_224" if cuda else "tiny VisionTransformer",
        "img_size": size,
        "batch": batch,
        "steps": steps,
        "precision": "bf16 autocast" if cuda else "float32",
        "torch": torch.__version__,
    }
    print(f"gpu-check on {report['device']}: {report['model']} at {size} px, batch {batch}, {report['precision']}")
    images = RandomImages(batch, size)
    inputs = images.images.to(device)
    labels = torch.arange(batch, device=device) % vit.num_classes
    report["branches"] = {}
    scratch = scratch_dir()
    try:
        report["stages"], interaction = interaction_stages(vit, images, device, scratch)
        stores = mask_stores(interaction, scratch)
        for name, method, settings in BRANCHES:
            branch = branch_of(method, settings, ALPHA, BETA)
            base = vit
            if branch.attn_layer:  # the same weights in a ViT built with the branch's attention layer
                base = make_model(device, branch.attn_layer).to(device)
                base.load_state_dict(vit.state_dict())
            report["branches"][name] = check_branch(name, branch, base, inputs, labels, stores, device, steps, args.lr)
    finally:
        remove(scratch)
    dense = report["branches"]["vit"]["step_ms"]
    for figures in report["branches"].values():
        figures["step_vs_vit"] = figures["step_ms"] / dense

    plain = report["stages"]["plain inference"]["images_per_s"]
    for stage, figures in report["stages"].items():
        figures["vs_plain_inference"] = figures["images_per_s"] / plain
        print(
            f"  {stage:<20} {figures['images_per_s']:9.1f} images/s {figures['vs_plain_inference']:5.2f} x plain"
            + memory_text(figures)
        )
    print(f"  {'branch':<20} {'images/s':>9} {'step ms':>9} {'x vit':>6} {'loss':>15} {'eval top-1':>10}")
    for name, figures in report["branches"].items():
        loss = f"{figures['loss_first']:.3f}->{figures['loss_last']:.3f}"
        print(
            f"  {name:<20} {figures['images_per_s']:9.1f} {figures['step_ms']:9.2f} {figures['step_vs_vit']:6.2f} "
            f"{loss:>15} {figures['eval_top1']:10.1f}" + memory_text(figures)
        )
    ranks = args.ranks or (torch.cuda.device_count() if cuda else 1)
    if ranks > 1:  # the training step on several ranks (DDP): NCCL between GPUs, gloo on CPU
        report["ranks"] = rank_scaling(args.device, ranks, batch, steps, args.lr)
        figures = report["ranks"]
        print(
            f"  vit step on 1 rank: {figures['1']['images_per_s']:.1f} images/s; on {ranks} ranks: "
            f"{figures[str(ranks)]['images_per_s']:.1f} images/s ({figures['speed_up']:.2f} x)"
        )
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=2)
    print("gpu-check passed: every branch trained with finite losses and evaluated")
    return 0


def memory_text(figures: dict) -> str:
    return f"  peak {figures['peak_gib']:.2f} GiB" if figures["peak_gib"] is not None else ""


if __name__ == "__main__":
    sys.exit(main())

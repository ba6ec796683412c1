"""Per-image cost of every stage, measured here, and its projection to ImageNet-1k and CUB.

Runs each stage of the workflow, as the rules do, on random images through a ViT-B/16
with random weights (224 px, and 448 px for CUB), on this machine's CPU:
attention capture into the Zarr store, the Dask U stage, the streaming stage
(attention.store: none), window / keep / field masks, and one training step of the
plain and of the window-masked ViT. Prints seconds and bytes per image as JSON
(docs/scaling.md quotes them) and the projection as a Markdown table.

    python benchmarks/scaling.py --images 32 --out scaling.json
    python benchmarks/scaling.py --device cuda        # on a GPU node: GPU seconds per image
"""

import argparse
import json

import torch
import zarr
from common import RandomImages, remove, scratch_dir, timed, vit_b16

from patchinteract.attention.extraction import write_attention_store, write_interaction_store_streaming
from patchinteract.interaction.interaction_store import compute_interaction_store
from patchinteract.masks.mask_stores import write_field_store, write_keep_store, write_window_store
from patchinteract.masks.windows import attention_windows
from patchinteract.models.masked import MaskedViT
from patchinteract.models.vit import patch_grid
from patchinteract.stores.chunked import folder_bytes
from patchinteract.training.loop import training_loss

# Images per split (ImageNet-1k; CUB-200-2011's official split) at the configs' input sizes.
DATASETS = {
    "imagenet": {"img_size": 224, "train": 1_281_167, "val": 50_000},
    "cub": {"img_size": 448, "train": 5_994, "val": 5_794},
}
ALPHA, BETA = 0.1, 0.1


def training_step_seconds(model, images, windows=None, steps=2):
    """Seconds per image of forward + backward + SGD step (after one warm-up step), with the
    training jobs' own loss and precision (training_loss: bf16 autocast on CUDA)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    labels = torch.zeros(len(images), dtype=torch.long, device=images.device)
    masks = [] if windows is None else [windows]

    def step():
        optimizer.zero_grad()
        training_loss(model, images, labels, masks).backward()
        optimizer.step()
        if images.device.type == "cuda":
            torch.cuda.synchronize()

    step()
    seconds, _ = timed(lambda: [step() for _ in range(steps)])
    return seconds / (steps * len(images))


def measure(img_size: int, n_images: int, batch_size: int, train_batch: int, device: torch.device) -> dict:
    model, dataset = vit_b16(img_size).to(device), RandomImages(n_images, img_size)
    scratch = scratch_dir()
    per_image = {}
    options = dict(device=device, batch_size=batch_size, workers=0, compression_level=1, attributes={})
    try:
        seconds, attention = timed(
            write_attention_store, model, dataset, scratch / "attn.zarr", chunk_setting="auto", **options
        )
        per_image["capture_s"], per_image["attention_bytes"] = seconds / n_images, folder_bytes(attention)
        seconds, interaction = timed(
            compute_interaction_store, attention, scratch / "u.zarr", dask_mode="threads", workers=2
        )
        per_image["u_stage_s"], per_image["interaction_bytes"] = seconds / n_images, folder_bytes(interaction)
        seconds, _ = timed(write_interaction_store_streaming, model, dataset, scratch / "u_stream.zarr", **options)
        per_image["streaming_s"] = seconds / n_images
        for name, write, args in (
            ("window", write_window_store, (interaction, scratch / "window.zarr", ALPHA)),
            ("keep", write_keep_store, (interaction, scratch / "keep.zarr", BETA)),
        ):
            seconds, path = timed(write, *args)
            per_image[f"{name}_masks_s"], per_image[f"{name}_bytes"] = seconds / n_images, folder_bytes(path)
        seconds, path = timed(
            write_field_store, interaction, scratch / "keep.zarr", scratch / "fields.zarr", ALPHA, BETA
        )
        per_image["field_masks_s"], per_image["field_bytes"] = seconds / n_images, folder_bytes(path)
        for key in ("attention_bytes", "interaction_bytes", "window_bytes", "keep_bytes", "field_bytes"):
            per_image[key] /= n_images

        u = zarr.open_group(interaction, mode="r")["U"][:train_batch]
        windows = torch.from_numpy(attention_windows(u, ALPHA, patch_grid(model))).to(device)
        images = dataset.images[:train_batch].to(device)
        model.train()
        per_image["train_plain_s"] = training_step_seconds(model, images)
        per_image["train_masked_s"] = training_step_seconds(MaskedViT(model), images, windows)
    finally:
        remove(scratch)
    return per_image


def projection(per_image: dict, dataset: dict) -> dict:
    """Hours and disk (GB) of each stage over both splits; training: hours per epoch of the train split."""
    both = dataset["train"] + dataset["val"]
    hours = {
        k[:-2]: per_image[k] * (dataset["train"] if k.startswith("train_") else both) / 3600
        for k in per_image
        if k.endswith("_s")
    }
    disk = {k[: -len("_bytes")]: per_image[k] * both / 1e9 for k in per_image if k.endswith("_bytes")}
    return {"hours": hours, "disk_gb": disk}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=32, help="images per measurement at 224 px (448 px: a quarter)")
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    device = torch.device(args.device)
    report = {"device": str(device), "threads": torch.get_num_threads(), "alpha": ALPHA, "beta": BETA, "datasets": {}}
    for name, dataset in DATASETS.items():
        size = dataset["img_size"]
        n_images = args.images if size == 224 else max(4, args.images // 4)
        train_batch = args.train_batch if size == 224 else max(2, args.train_batch // 4)
        per_image = measure(size, n_images, batch_size=8, train_batch=train_batch, device=device)
        report["datasets"][name] = {
            "img_size": size,
            "measured_images": n_images,
            "per_image": per_image,
            **projection(per_image, dataset),
        }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()

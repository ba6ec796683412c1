"""MAE pre-training with random or guided masks (Wu et al. Sec. 5.2, Fig. 9) and the restoration
experiment (Sec. 2, Fig. 2): the samples a run trains on, the k-NN monitor after every round, the linear
probe at the end, and the reconstruction errors under keypoint, non-keypoint and random masks.

The pre-training images are the evaluation view (the view the keypoints were counted on), so that a
keypoint patch is the same patch in the masks; the only augmentation is the horizontal flip, which flips
the mask with the image. Image, flip and mask of a sample are functions of (seed, round, image): the two
schedules see the same images in the same order and differ only in their masks.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from patchinteract.analyses.semantics.guided import RESTORATION_CHOICES, MaskSchedule, guided_mask, random_mask
from patchinteract.analyses.semantics.mae import MaskedAutoencoder
from patchinteract.models.transforms import data_config
from patchinteract.models.vit import load_baseline
from patchinteract.ranks import gathered, rank_block
from patchinteract.runtime import autocast
from patchinteract.stores.chunked import ArraySpec
from patchinteract.training.loop import EpochSamples


class PretrainingSamples(EpochSamples):
    """(uint8 image, image_id, masked patches) of ``images`` in a round: flipped with probability
    1/2 when ``hflip``, masked as ``masks`` says, both drawn from (``seed``, round, index)."""

    def __init__(self, images, masks: MaskSchedule, grid: tuple[int, int], seed: int, hflip: bool):
        self.images, self.masks, self.grid, self.seed, self.hflip = images, masks, grid, seed, hflip

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, epoch: int, index: int):
        image, _label, image_id = self.images[index]
        rng = np.random.default_rng([self.seed, epoch, index])
        flip = self.hflip and rng.random() < 0.5  # drawn first: the same flips whatever the schedule
        masked = self.masks.mask(index, epoch, rng)
        if flip:
            image = image.flip(-1)
            masked = masked.reshape(self.grid)[:, ::-1].reshape(-1)
        return image, image_id, torch.from_numpy(np.ascontiguousarray(masked))


@torch.no_grad()
def pooled_features(mae, dataset, device: torch.device, batch_size: int, workers: int = 0):
    """(features, labels) of every image of ``dataset`` (normalised evaluation views) from the encoder's
    pooled output; under several ranks each computes its block, gathered in order."""
    loader = torch.utils.data.DataLoader(rank_block(dataset), batch_size=batch_size, num_workers=workers)
    features, labels = [], []
    for images, batch_labels, _ids in tqdm(loader, desc="features", unit="batch", mininterval=5, leave=False):
        with autocast(device):
            features.append(mae.pooled_features(images.to(device)).float().cpu())
        labels.append(torch.as_tensor(batch_labels))
    parts = gathered((features, labels))
    return torch.cat([f for part, _ in parts for f in part]), torch.cat([y for _, part in parts for y in part])


def knn_predictions(
    bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, k: int, temperature: float
) -> np.ndarray:
    """The class of each query by a k-NN vote over ``bank`` (cosine similarity; each of the k neighbours
    votes exp(similarity / temperature) for its class, the weighted k-NN of self-supervised monitors)."""
    bank, queries = F.normalize(bank.float(), dim=1), F.normalize(queries.float(), dim=1)
    classes = int(bank_labels.max()) + 1
    predictions = []
    for start in range(0, len(queries), 1024):
        top = (queries[start : start + 1024] @ bank.T).topk(min(k, len(bank)), dim=1)
        votes = torch.zeros(len(top.indices), classes).scatter_add_(
            1, bank_labels[top.indices], (top.values / temperature).exp()
        )
        predictions.append(votes.argmax(dim=1))
    return torch.cat(predictions).numpy()


def linear_probe(train_features: torch.Tensor, train_labels: torch.Tensor, val_features: torch.Tensor) -> np.ndarray:
    """Val predictions of a logistic regression on the frozen, standardised train features (L-BFGS:
    deterministic)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probe.fit(train_features.numpy(), train_labels.numpy())
    return probe.predict(val_features.numpy())


class EncoderMonitor:
    """k-NN top-1 of the encoder after each round (train as the memory bank, val as the queries), and
    the final evaluation with the linear probe."""

    def __init__(self, bank, queries, masks: MaskSchedule, k: int, temperature: float, device, loader: dict):
        self.bank, self.queries, self.masks = bank, queries, masks
        self.k, self.temperature, self.device, self.loader = k, temperature, device, loader
        self.latest = None  # the last round's features: the final model's, when training ended after it

    def features(self, mae):
        bank = pooled_features(mae, self.bank, self.device, **self.loader)
        self.latest = bank, pooled_features(mae, self.queries, self.device, **self.loader)
        return self.latest

    def __call__(self, mae, round_index: int) -> dict:
        """The record of round ``round_index + 1``: after the 0-based ``round_index``, or with −1 the
        encoder as initialised (round 0, no mask drawn yet: the start a pre-training curve is read from)."""
        (bank, bank_labels), (queries, labels) = self.features(mae)
        predictions = knn_predictions(bank, bank_labels, queries, self.k, self.temperature)
        trained = round_index >= 0
        images, patches = self.masks.fallback(round_index) if trained else (0, 0)
        return {
            "round": round_index + 1,
            "beta": self.masks.beta(round_index) if trained else None,
            "knn_top1": 100.0 * float((predictions == labels.numpy()).mean()),
            "fallback_images": images,
            "fallback_patches": patches,
        }

    def final(self, mae) -> pd.DataFrame:
        """Per val image: label, k-NN and linear-probe predictions and whether each is correct (from the
        last round's features, or, in a run resumed after its last round, computed now)."""
        mae.eval()
        (bank, bank_labels), (queries, labels) = self.latest or self.features(mae)
        knn = knn_predictions(bank, bank_labels, queries, self.k, self.temperature)
        probe = linear_probe(bank, bank_labels, queries)
        labels = labels.numpy()
        return pd.DataFrame(
            {
                "image_id": np.asarray(self.queries.image_ids),
                "label": labels,
                "knn_prediction": knn,
                "knn_correct": knn == labels,
                "probe_prediction": probe,
                "probe_correct": probe == labels,
            }
        )


def restoration_mask(choice: str, keypoint: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """(N,) bool: r of the patches among the keypoint ones, among the non-keypoint ones (the rest from the
    other kind where an image has too few), or at random."""
    if choice == "random":
        return random_mask(len(keypoint), ratio, rng)
    return guided_mask(keypoint, ratio, 1.0 if choice == "keypoint" else 0.0, rng)


@torch.no_grad()
def restoration_errors(mae, dataset, keypoint: np.ndarray, ratio: float, seed: int, device, batch_size: int):
    """Per val image and choice of masked patches: the MAE's reconstruction error on them (normalised-pixel
    targets) and how many were keypoint patches. Masks are drawn from (seed, image)."""
    mae.to(device).eval()
    rows = []
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size)
    start = 0
    for images, _labels, image_ids in tqdm(loader, desc="restoration", unit="batch", mininterval=5):
        stop = start + len(images)
        for choice in RESTORATION_CHOICES:
            masks = np.stack(
                [
                    restoration_mask(choice, keypoint[i], ratio, np.random.default_rng([seed, i]))
                    for i in range(start, stop)
                ]
            )
            with autocast(device):
                errors = mae.errors(images.to(device), torch.from_numpy(masks).to(device))
            rows.append(
                pd.DataFrame(
                    {
                        "image_id": np.asarray(image_ids),
                        "choice": choice,
                        "masked_keypoint_patches": (masks & keypoint[start:stop]).sum(axis=1),
                        "mse": errors.float().cpu().numpy(),
                    }
                )
            )
        start = stop
    return pd.concat(rows, ignore_index=True)


def load_mae(model: dict, manifest: str, decoder: dict, encoder_weights: str, decoder_weights: str):
    """A pre-trained MAE: the experiment's ViT with its encoder weights and the decoder's."""
    from safetensors.torch import load_file

    vit = load_baseline(model, encoder_weights, manifest)
    mae = MaskedAutoencoder(vit, decoder)
    mae.decoder.load_state_dict(load_file(str(decoder_weights)))
    return mae.eval()


def example_specs(n_runs: int, channels: int, size: int, n_patches: int) -> dict[str, ArraySpec]:
    """The restoration figure's store: each image's view, and per run and choice its masked patches and
    the restored image (pixels in [0, 1])."""
    choices = len(RESTORATION_CHOICES)
    return {
        "image": ArraySpec((channels, size, size), "float32", ("image", "channel", "y", "x")),
        "masked": ArraySpec((n_runs, choices, n_patches), "bool", ("image", "run", "choice", "patch")),
        "restored": ArraySpec(
            (n_runs, choices, channels, size, size), "float32", ("image", "run", "choice", "channel", "y", "x")
        ),
        "image_id": ArraySpec((), "int64", ("image",)),
    }


def spread_over_classes(labels: np.ndarray, count: int) -> np.ndarray:
    """Positions of ``count`` images taken a class at a time: the first image of each class (classes in the
    order they first appear), then the second of each, and so on."""
    labels = np.asarray(labels)
    _, first, classes = np.unique(labels, return_index=True, return_inverse=True)
    seen = np.zeros(len(first), dtype=np.int64)
    occurrence = np.empty(len(labels), dtype=np.int64)  # how many of its class came before each image
    for position, label in enumerate(classes):
        occurrence[position], seen[label] = seen[label], seen[label] + 1
    return np.lexsort((first[classes], occurrence))[:count]


@torch.no_grad()
def restoration_examples(maes: list, dataset, keypoint: np.ndarray, ratio: float, seed: int, count: int, device):
    """``count`` images of ``dataset`` spread over its classes (:func:`spread_over_classes`) and, for every
    MAE and choice, their masks (those of :func:`restoration_errors`) and restorations, as [0, 1] pixels."""
    chosen = spread_over_classes(dataset.labels, count)
    images = torch.stack([dataset[i][0] for i in chosen]).to(device)
    config = data_config(maes[0].encoder)
    mean = torch.as_tensor(config["mean"], device=device).view(1, -1, 1, 1)
    std = torch.as_tensor(config["std"], device=device).view(1, -1, 1, 1)
    masks, restored = [], []
    for mae in maes:
        mae.to(device).eval()
        run_masks = np.stack(
            [
                [restoration_mask(choice, keypoint[i], ratio, np.random.default_rng([seed, i])) for i in chosen]
                for choice in RESTORATION_CHOICES
            ]
        )  # (choice, image, N)
        masks.append(run_masks)
        restored.append(
            torch.stack([mae.restored(images, torch.from_numpy(m).to(device)) * std + mean for m in run_masks])
        )
    return {
        "image": (images * std + mean).clamp(0, 1).cpu().numpy(),
        "masked": np.stack(masks).transpose(2, 0, 1, 3),
        "restored": torch.stack(restored).clamp(0, 1).permute(2, 0, 1, 3, 4, 5).cpu().numpy(),
        "image_id": np.asarray(dataset.image_ids)[chosen],
    }

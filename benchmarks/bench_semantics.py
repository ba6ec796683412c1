"""Wu et al.'s stages at ViT-B/16 scale (224 px, 14 x 14 patches, 12 layers x 12 heads):

1. θ and the focus index of one image's attention, vectorised (interrelation.semantic_reductions)
   against a row-by-row loop of eq. 2-5 (the baseline of the ratio; the same numbers);
2. SIFT keypoints per patch on 224 px views of scikit-learn's two bundled photographs, on 1 thread
   against --threads threads (write_keypoint_store's thread pool).
"""

import argparse
import math
import time
from concurrent.futures import ThreadPoolExecutor

import patchinteract.compat  # noqa: F401

import cv2
import numpy as np

from patchinteract.analyses.semantics.interrelation import semantic_reductions
from patchinteract.analyses.semantics.keypoints import KeypointCounter


def random_attention(layers, heads, tokens, seed=0):
    logits = np.random.default_rng(seed).normal(size=(1, layers, heads, tokens, tokens)) * 2
    weights = np.exp(logits)
    return (weights / weights.sum(-1, keepdims=True)).astype(np.float16)


def loop_reductions(attn, counts):
    """θ_KK, θ_NK and the focus index of every head, row by row (eq. 2-5)."""
    n = len(counts)
    results = []
    for layer in range(attn.shape[1]):
        for head in range(attn.shape[2]):
            rows = attn[0, layer, head, 1:, 1:].astype(np.float64)
            key, non, focus = [], [], []
            for i in range(n):
                row = rows[i]
                attended = row >= row.mean()
                keyed = sum(counts[j] for j in range(n) if attended[j] and counts[j] > 0)
                other = sum(1 for j in range(n) if attended[j] and counts[j] == 0)
                (key if counts[i] > 0 else non).append(keyed / (keyed + other))
                scaled = (row - row.min()) / (row.max() - row.min())
                q = scaled / scaled.sum()
                focus.append(-sum(p * math.log(p) for p in q if p > 0))
            results.append((np.mean(key), np.mean(non), np.mean(focus)))
    return np.array(results)


def views(count):
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images  # china.jpg, flower.jpg: 427 x 640
    rng = np.random.default_rng(0)
    crops = []
    for index in range(count):
        photo = photos[index % len(photos)]
        top, left = rng.integers(0, photo.shape[0] - 256), rng.integers(0, photo.shape[1] - 256)
        crops.append(cv2.resize(photo[top : top + 256, left : left + 256], (224, 224), interpolation=cv2.INTER_CUBIC))
    return crops


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="views for the SIFT timing")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    attn = random_attention(12, 12, 197)
    counts = np.random.default_rng(1).poisson(0.6, size=196)
    start = time.perf_counter()
    fast = semantic_reductions(attn, 1, counts[None])
    vectorised = time.perf_counter() - start
    start = time.perf_counter()
    slow = loop_reductions(attn, counts)
    looped = time.perf_counter() - start
    for column, name in enumerate(("theta_kk", "theta_nk", "focus_index")):
        np.testing.assert_allclose(fast[name].reshape(-1), slow[:, column], rtol=1e-4)
    print(
        f"θ + focus index, one ViT-B/16 image (144 heads x 196 rows): vectorised {vectorised * 1000:.0f} ms, "
        f"loop {looped:.1f} s: {looped / vectorised:.0f}x"
    )

    crops = views(args.images)
    counter = KeypointCounter(
        (14, 14), (16, 16), {"assign": "location", "contrast_threshold": 0.04, "edge_threshold": 10.0}
    )
    cv2.setNumThreads(1)
    seconds = {}
    for threads in (1, args.threads):
        with ThreadPoolExecutor(threads) as pool:
            start = time.perf_counter()
            found = list(pool.map(counter.counts, crops))
            seconds[threads] = time.perf_counter() - start
    keypoints = np.mean([c.sum() for c in found])
    share = np.mean([(c > 0).mean() for c in found])
    print(
        f"SIFT on {len(crops)} 224 px views: {keypoints:.0f} keypoints each, {share:.0%} keypoint patches; "
        f"{len(crops) / seconds[1]:.0f} images/s on 1 thread, {len(crops) / seconds[args.threads]:.0f} on "
        f"{args.threads}: {seconds[1] / seconds[args.threads]:.2f}x"
    )


if __name__ == "__main__":
    main()

"""Datasets: digits, ImageFolder checks, corrupt images, and URL archives served from 127.0.0.1."""

import hashlib
import http.server
import io
import re
import tarfile
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_snakemake
from PIL import Image

from patchinteract.data.manifest import (
    DatasetError,
    check_images,
    finalize_manifest,
    read_cub_layout,
    read_manifest,
    scan_imagefolder,
    write_manifest,
)
from patchinteract.data.sources import download, write_digits_imagefolder


def write_png(path: Path, value: int = 128, size: int = 8):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)


def make_imagefolder(root: Path, counts=(("train", 3), ("val", 2)), classes=("cat", "dog")):
    for split, count in counts:
        for c, name in enumerate(classes):
            for i in range(count):
                write_png(root / split / name / f"{i}.png", value=40 * c + i)
    return root


def test_digits_are_written_stratified_and_deterministic(tmp_path):
    first = write_digits_imagefolder(tmp_path / "a", image_size=16, val_fraction=0.4, seed=0, per_class=5)
    second = write_digits_imagefolder(tmp_path / "b", image_size=16, val_fraction=0.4, seed=0, per_class=5)
    assert len(first) == 50
    assert (first["split"] == "val").sum() == 20
    assert first.groupby("split")["label"].nunique().to_dict() == {"train": 10, "val": 10}
    pd.testing.assert_frame_equal(first, second)
    with Image.open(tmp_path / "a" / first["path"][0]) as image:
        assert image.size == (16, 16) and image.mode == "RGB"


def test_manifest_order_and_round_trip(tmp_path):
    root = make_imagefolder(tmp_path / "data")
    manifest = finalize_manifest(check_images(scan_imagefolder(root, {"train": "train", "val": "val"}), root, "error"))
    assert list(manifest["image_id"]) == list(range(10))
    assert list(manifest["split"]) == ["train"] * 6 + ["val"] * 4
    assert list(manifest["class_name"][:3]) == ["cat"] * 3
    write_manifest(manifest, tmp_path / "m.parquet", root)
    val, read_root = read_manifest(tmp_path / "m.parquet", split="val")
    assert read_root == root and list(val["image_id"]) == [6, 7, 8, 9]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda root: __import__("shutil").rmtree(root / "val"), "split 'val'.*does not exist"),
        (lambda root: (root / "val" / "bird").mkdir(), "other classes"),
    ],
)
def test_imagefolder_layout_errors_name_the_problem(tmp_path, mutate, message):
    root = make_imagefolder(tmp_path / "data")
    mutate(root)
    with pytest.raises(DatasetError, match=message):
        scan_imagefolder(root, {"train": "train", "val": "val"})


def test_imagefolder_count_is_checked(tmp_path):
    root = make_imagefolder(tmp_path / "data")
    with pytest.raises(DatasetError, match="expected 7 images, found 6"):
        scan_imagefolder(root, {"train": "train", "val": "val"}, expected_counts={"train": 7})


def test_a_class_list_keeps_a_subset_labelled_in_order(tmp_path):
    root = make_imagefolder(tmp_path / "data", classes=("cat", "dog", "eel"))
    every = scan_imagefolder(root, {"train": "train", "val": "val"})
    subset = scan_imagefolder(root, {"train": "train", "val": "val"}, classes=["eel", "cat"])
    assert subset.groupby("class_name")["label"].first().to_dict() == {"cat": 0, "eel": 1}
    assert len(subset) == 10 and len(every) == 15
    with pytest.raises(DatasetError, match=r"no class folders \['zebra'\]"):
        scan_imagefolder(root, {"train": "train", "val": "val"}, classes=["cat", "zebra"])


def test_corrupt_image_errors_or_is_skipped_and_listed(tmp_path):
    root = make_imagefolder(tmp_path / "data")
    (root / "train" / "dog" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    table = scan_imagefolder(root, {"train": "train", "val": "val"})
    with pytest.raises(DatasetError, match=r"train/dog/1\.png"):
        check_images(table, root, "error")
    manifest = finalize_manifest(check_images(table, root, "skip"))
    bad = manifest[manifest["error"].notna()]
    assert list(bad["path"]) == ["train/dog/1.png"]
    write_manifest(manifest, tmp_path / "m.parquet", root)
    usable, _ = read_manifest(tmp_path / "m.parquet")
    assert len(usable) == 9 and "train/dog/1.png" not in set(usable["path"])


def test_cub_layout_uses_the_official_split(tmp_path):
    root = tmp_path / "CUB_200_2011"
    write_png(root / "images" / "001.Albatross" / "a.jpg")
    write_png(root / "images" / "002.Auklet" / "b.jpg")
    write_png(root / "images" / "002.Auklet" / "c.jpg")
    (root / "images.txt").write_text("1 001.Albatross/a.jpg\n2 002.Auklet/b.jpg\n3 002.Auklet/c.jpg\n")
    (root / "image_class_labels.txt").write_text("1 1\n2 2\n3 2\n")
    (root / "train_test_split.txt").write_text("1 1\n2 0\n3 1\n")
    (root / "classes.txt").write_text("1 001.Albatross\n2 002.Auklet\n")
    table = read_cub_layout(root)
    assert table.to_dict("list") == {
        "path": ["images/001.Albatross/a.jpg", "images/002.Auklet/b.jpg", "images/002.Auklet/c.jpg"],
        "label": [0, 1, 1],
        "class_name": ["001.Albatross", "002.Auklet", "002.Auklet"],
        "split": ["train", "val", "train"],
    }


# --------------------------------------------------------------------------- served archives


class ArchiveHandler(http.server.BaseHTTPRequestHandler):
    """Serves /<name> from ``files``; /cut/<name> announces the full length but sends half."""

    files: dict[str, bytes] = {}

    def do_GET(self):
        cut = self.path.startswith("/cut/")
        body = self.files.get(self.path.removeprefix("/cut/").lstrip("/"))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if cut else body)
        self.wfile.flush()
        if cut:
            self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ArchiveHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", ArchiveHandler.files
    httpd.shutdown()
    ArchiveHandler.files.clear()


def imagefolder_archive(tmp_path: Path) -> bytes:
    root = make_imagefolder(tmp_path / "src" / "toy")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(root, arcname="toy")
    return buffer.getvalue()


def url_config(tiny_config, url, sha256):
    tiny_config["datasets"] = {"remote": {"source": "url", "url": url, "sha256": sha256, "root": "toy"}}
    tiny_config["experiments"]["tiny"]["dataset"] = "remote"
    return tiny_config


@pytest.mark.slow
def test_download_rule_fetches_verifies_and_indexes(tmp_path, server, tiny_config):
    base, files = server
    files["toy.tar.gz"] = archive = imagefolder_archive(tmp_path)
    config = url_config(tiny_config, f"{base}/toy.tar.gz", hashlib.sha256(archive).hexdigest())
    run_snakemake(tmp_path, config, "results/datasets/remote/manifest.parquet")
    manifest, root = read_manifest(tmp_path / "results/datasets/remote/manifest.parquet")
    assert len(manifest) == 10 and set(manifest["class_name"]) == {"cat", "dog"}
    assert root == Path("results/datasets/remote/images/toy")
    assert not (tmp_path / "results/datasets/remote/toy.tar.gz").exists()  # keep_archives is false


@pytest.mark.slow
@pytest.mark.parametrize(
    "path, checksum, message",
    [
        ("toy.tar.gz", "0" * 64, "checksum mismatch for .*: expected sha256 0{64}, got [0-9a-f]{64}"),
        ("cut/toy.tar.gz", None, r"download of .* (broke off after \d+ of \d+ bytes|is incomplete)"),
    ],
)
def test_failed_download_says_why_and_leaves_nothing(tmp_path, server, tiny_config, path, checksum, message):
    base, files = server
    files["toy.tar.gz"] = archive = imagefolder_archive(tmp_path)
    config = url_config(tiny_config, f"{base}/{path}", checksum or hashlib.sha256(archive).hexdigest())
    result = run_snakemake(tmp_path, config, "results/datasets/remote/manifest.parquet", check=False)
    assert result.returncode != 0
    assert re.search(message, (tmp_path / "results/logs/download_dataset/remote.log").read_text())
    leftovers = tmp_path / "results/datasets/remote"
    assert not leftovers.exists() or not any(leftovers.rglob("*"))


def test_cut_transfer_of_the_download_function_leaves_nothing(tmp_path, server):
    base, files = server
    files["big.bin"] = bytes(range(256)) * 4096
    destination = tmp_path / "dl" / "big.bin"
    with pytest.raises(DatasetError, match=r"broke off|incomplete"):
        download(f"{base}/cut/big.bin", destination, hashlib.sha256(files["big.bin"]).hexdigest())
    assert list((tmp_path / "dl").iterdir()) == []
    download(f"{base}/big.bin", destination, hashlib.sha256(files["big.bin"]).hexdigest())
    assert destination.read_bytes() == files["big.bin"]


def test_cached_images_are_decoded_once_and_give_the_same_augmented_samples(tmp_path):
    """data.cache_images: the same seeded samples epoch after epoch, without reading the files again."""
    import shutil

    import torch
    from torchvision import transforms

    from patchinteract.data.manifest import check_images, finalize_manifest, split_dataset, write_manifest
    from patchinteract.training.loop import SeededSamples

    table = write_digits_imagefolder(tmp_path / "images", image_size=16, val_fraction=0.5, seed=0, per_class=2)
    write_manifest(
        finalize_manifest(check_images(table, tmp_path / "images", "error")),
        tmp_path / "m.parquet",
        tmp_path / "images",
    )
    augment = transforms.Compose([transforms.RandomResizedCrop(16, scale=(0.5, 1.0)), transforms.ToTensor()])
    plain = SeededSamples(split_dataset(tmp_path / "m.parquet", "train", augment), seed=3)
    cached = SeededSamples(split_dataset(tmp_path / "m.parquet", "train", augment, cache_images=True), seed=3)
    keys = [(epoch, index) for epoch in range(2) for index in range(len(plain))]
    expected = [plain[key][0] for key in keys]
    first = [cached[key][0] for key in keys[: len(plain)]]
    shutil.rmtree(tmp_path / "images")  # the second epoch reads nothing from disk
    second = [cached[key][0] for key in keys[len(plain) :]]
    for want, got in zip(expected, first + second, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert not torch.equal(expected[0], expected[len(plain)])  # the augmentation differs per epoch
    with pytest.raises(DatasetError, match="cannot read image"):
        plain[(0, 0)]  # without the cache the files are needed


def test_batches_are_the_per_image_pipeline_bit_for_bit(tmp_path):
    """Training batches: uint8 crops normalised per batch equal torchvision's ToTensor + Normalize per image,
    and a batch fetched at once (__getitems__) holds each key's own sample and leaves the global RNG alone."""
    import torch
    from torchvision import transforms

    from patchinteract.data.manifest import check_images, finalize_manifest, split_dataset, write_manifest
    from patchinteract.models.transforms import batch_normalization, data_config, train_transform
    from patchinteract.models.vit import create_vit
    from patchinteract.training.loop import SeededSamples

    table = write_digits_imagefolder(tmp_path / "images", image_size=16, val_fraction=0.5, seed=0, per_class=2)
    write_manifest(
        finalize_manifest(check_images(table, tmp_path / "images", "error")),
        tmp_path / "m.parquet",
        tmp_path / "images",
    )
    vit = create_vit("VisionTransformer", 16, 4, 10, {"embed_dim": 32, "depth": 1, "num_heads": 2})
    crop = train_transform(vit, (0.5, 1.0))
    config = data_config(vit)
    per_image = transforms.Compose(
        [crop.transforms[0], transforms.ToTensor(), transforms.Normalize(config["mean"], config["std"])]
    )
    reference = SeededSamples(split_dataset(tmp_path / "m.parquet", "train", per_image), seed=5)
    batched = SeededSamples(split_dataset(tmp_path / "m.parquet", "train", crop), seed=5)
    keys = [(epoch, index) for epoch in range(2) for index in range(len(reference))]
    state = torch.get_rng_state()
    samples = batched.__getitems__(keys)
    assert torch.equal(torch.get_rng_state(), state)
    assert samples[0][0].dtype == torch.uint8
    images = batch_normalization(vit)(torch.stack([sample[0] for sample in samples]))
    expected = torch.stack([reference[key][0] for key in keys])
    assert torch.equal(images, expected)  # bit for bit
    assert not torch.equal(images[0], images[len(reference)])  # the crop differs per epoch
    with pytest.raises(TypeError, match="uint8"):
        batch_normalization(vit)(expected)


def users_folder(root: Path) -> dict[str, np.ndarray]:
    """An image folder as users have one: each mode and format Pillow reads, upper-case extensions, a nested
    folder, and stray files. Returns each image's path (under ``root``) and the RGB pixels expected of it."""
    gradient = np.arange(16, dtype=np.uint8).reshape(4, 4) * 16
    rgb = np.stack([gradient, 255 - gradient, np.full_like(gradient, 7)], axis=-1)
    alpha = np.array([[0, 255, 255, 0]] * 4, np.uint8)  # fully transparent or opaque: exact composites
    white = np.full_like(rgb, 255)
    opaque = alpha[..., None] == 255
    expected = {}

    def save(relative, image, pixels, **options):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        image.save(root / relative, **options)
        expected[relative] = pixels

    save("train/flower/rgb.PNG", Image.fromarray(rgb), rgb)
    save("train/flower/gray.png", Image.fromarray(gradient), np.repeat(gradient[..., None], 3, -1))
    save("train/flower/rgba.png", Image.fromarray(np.dstack([rgb, alpha])), np.where(opaque, rgb, white))
    sixteen = gradient.astype(np.uint16) * 257  # 0 … 61,680 in 16 bits: the 8-bit gradient again
    save("train/flower/sixteen_bit.png", Image.fromarray(sixteen), np.repeat(gradient[..., None], 3, -1))
    floats = gradient.astype(np.float32) / 255
    save("train/flower/float.tif", Image.fromarray(floats), np.repeat(gradient[..., None], 3, -1))
    palette = Image.fromarray(rgb).quantize(colors=16, dither=Image.Dither.NONE)
    palette_rgb = np.asarray(palette.convert("RGB"))
    save("train/flower/palette.gif", palette, palette_rgb)
    transparent = palette.copy()
    transparent.info["transparency"] = int(np.asarray(palette)[0, 0])  # the top-left pixel's colour
    clear = np.asarray(palette) == np.asarray(palette)[0, 0]
    save("train/flower/palette_alpha.png", transparent, np.where(clear[..., None], white, palette_rgb))
    photo = Image.fromarray(np.full((8, 8, 3), (200, 30, 90), np.uint8))
    save("train/tree/nested/photo.JPEG", photo, np.asarray(Image.open(_jpeg(photo)).convert("RGB")))
    cmyk = photo.convert("CMYK")
    save("train/tree/cmyk.JPG", cmyk, np.asarray(Image.open(_jpeg(cmyk)).convert("RGB")))
    for relative in ("train/flower/.DS_Store", "train/tree/notes.txt", "train/README.md"):
        (root / relative).write_text("not an image")
    return expected


def _jpeg(image: Image.Image) -> io.BytesIO:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    buffer.seek(0)
    return buffer


def test_every_image_of_a_users_folder_is_read_as_it_looks_and_every_other_file_is_reported(tmp_path):
    """16-bit and float images scaled to 8 bits (not clipped white), transparency on white, palette, GIF,
    CMYK, upper-case extensions and nested folders read; stray files reported by reason, none silently."""
    from patchinteract.data.manifest import NOT_AN_IMAGE, OUTSIDE_CLASSES, left_out_summary, read_rgb

    root = tmp_path / "data"
    expected = users_folder(root)
    left_out = {}
    table = check_images(scan_imagefolder(root, {"train": "train"}, left_out=left_out), root, "error")
    assert sorted(table["path"]) == sorted(expected)
    assert left_out == {
        OUTSIDE_CLASSES: ["train/README.md"],
        NOT_AN_IMAGE: ["train/flower/.DS_Store", "train/tree/notes.txt"],
    }
    assert dict(zip(table["path"], table["class_name"], strict=True))["train/tree/nested/photo.JPEG"] == "tree"
    for relative, pixels in expected.items():
        image = read_rgb(root / relative)
        assert image.mode == "RGB", relative
        np.testing.assert_array_equal(np.asarray(image), pixels, err_msg=relative)
    summary = left_out_summary(left_out, table)
    assert summary.startswith("1 outside a class folder: train/README.md; 2 not an image file"), summary


def test_a_class_names_file_names_the_classes_it_lists(tmp_path):
    """ImageNet's LOC_synset_mapping.txt form: a folder and its readable name per line; folders it does not
    list keep their name; a line without a name is an error that says where."""
    from patchinteract.data.manifest import DatasetError, class_names

    manifest = pd.DataFrame({"label": [0, 1, 2, 1], "class_name": ["n01440764", "n01443537", "flower", "n01443537"]})
    names = tmp_path / "LOC_synset_mapping.txt"
    names.write_text("# readable names\nn01440764 tench, Tinca tinca\n\nn01443537   goldfish, Carassius auratus\n")
    assert class_names(manifest) == ["n01440764", "n01443537", "flower"]
    assert class_names(manifest, names) == ["tench, Tinca tinca", "goldfish, Carassius auratus", "flower"]
    names.write_text("n01440764 tench\nn01443537\n")
    with pytest.raises(DatasetError, match="LOC_synset_mapping.txt, line 2: expected '<folder> <name>'"):
        class_names(manifest, names)


@pytest.mark.slow
def test_the_manifest_rule_reads_a_users_folder_and_says_what_it_left_out(tmp_path, tiny_config):
    """The dataset_manifest job on such a folder: every image in the manifest, and its log counts and names
    the stray files, so that "0 skipped" can only mean that nothing was left out."""
    import shutil

    root = tmp_path / "data"
    expected = users_folder(root)
    shutil.copytree(root / "train", root / "val")
    tiny_config["datasets"] = {"mine": {"source": "imagefolder", "path": str(root)}}
    tiny_config["experiments"]["tiny"]["dataset"] = "mine"
    run_snakemake(tmp_path, tiny_config, "results/datasets/mine/manifest.parquet")
    manifest, _ = read_manifest(tmp_path / "results/datasets/mine/manifest.parquet", split="train")
    assert sorted(manifest["path"]) == sorted(expected)
    log = (tmp_path / "results/logs/dataset_manifest/mine.log").read_text()
    assert f"{2 * len(expected)} images (6 skipped), 2 classes" in log
    assert "2 outside a class folder: train/README.md, val/README.md; 4 not an image file (extension)" in log
    # the figures name an image's class as its folder does
    from patchinteract.report.figures import load_images

    picked = manifest[manifest["path"].isin(["train/tree/nested/photo.JPEG", "train/flower/palette.gif"])]
    images, captions = load_images(tmp_path / "results/datasets/mine/manifest.parquet", picked["image_id"].tolist(), 8)
    assert [image.shape for image in images] == [(8, 8, 3)] * 2
    assert captions == [
        f"train image {i}: {name}" for i, name in zip(picked["image_id"], picked["class_name"], strict=True)
    ]
    assert {caption.rsplit(": ", 1)[1] for caption in captions} == {"flower", "tree"}

"""Kinds of retraining branch, one class each: vit, awd (windows), awd_dip (windows and kept tokens), winft.

A kind is declared once, here or in a file named by ``retrain.kind_modules``: its method name, the
pattern of its branch names, the grid values its branches span, the α and β it records, the mask
stores it reads, the settings its jobs read, what it needs of the config, and how it trains and
evaluates. ``patchinteract.grid`` plans the branches from these classes, ``rules/retrain.smk`` makes one
rule per kind, the config checks and each branch's fingerprint follow; defining a subclass with a new
``name`` declares a new kind (docs/design.md, "A new kind of retraining branch").

The Snakefile reads the declarations, so importing this module imports no torch: the training side
imports what it needs in the methods that only jobs call.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import ClassVar

from patchinteract import paths

# method name -> kind, in declaration order (the order of an experiment's branches)
KINDS: dict[str, type[ViTBranch]] = {}
# Settings of the retrain section that every kind built on the masked ViT reads.
SHARED_SETTINGS = ("cls_in_window", "dip_mode")


def declare(kind: type[ViTBranch]) -> None:
    """Register a kind under its name (subclassing does it); a name declared twice, or a pattern another kind's
    branch names already follow, is an error."""
    known = KINDS.get(kind.name)
    if known is not None and known is not kind:
        raise ValueError(
            f"branch kind '{kind.name}' is declared twice ({known.__module__}.{known.__qualname__} and "
            f"{kind.__module__}.{kind.__qualname__})"
        )
    same = [other.name for other in KINDS.values() if other is not kind and other.pattern == kind.pattern]
    if same:
        raise ValueError(f"branch kind '{kind.name}' has the pattern '{kind.pattern}' of '{same[0]}' (set its own)")
    KINDS[kind.name] = kind


class ViTBranch:
    """The plain ViT branch, and the base of every kind of retraining branch.

    Declaration (class methods, from the config): ``name``, ``pattern``, :meth:`points`,
    :meth:`mask_values`, :meth:`stores`, :meth:`settings`, :meth:`own_settings`, :meth:`problems`,
    ``outputs``. Training (an instance per job): ``settings`` are the options the kind reads; ``alpha``
    and ``beta`` the branch's own values, which its mask stores must have been computed for; ``stores``
    of one split map a kind of mask store (window, keep, fields) to its folder.
    """

    name: ClassVar[str] = "vit"  # the method in retrain.methods, metrics.json and the tables
    pattern: ClassVar[str] = "vit"  # its branch names: {alpha} and {beta} stand for the values' labels
    outputs: ClassVar[dict[str, str]] = {}  # files of a seed's folder beyond metrics, predictions and weights

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            declare(cls)

    # ----------------------------------------------------------------- the declaration (no torch)

    @classmethod
    def points(cls, config: dict) -> list[dict[str, float]]:
        """The grid values of the kind's branches, one dict per branch (the fields of ``pattern``)."""
        return [{}]

    @classmethod
    def branch(cls, point: dict) -> str:
        """The branch name of a point (values or their labels)."""
        return cls.pattern.format(**{axis: paths.label_of(value) for axis, value in point.items()})

    @classmethod
    def point_of(cls, branch: str) -> dict[str, str] | None:
        """The labels a branch name of this kind carries (None: not one of this kind's names)."""
        regex = re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^_/]+)", re.escape(cls.pattern))
        match = re.fullmatch(regex, branch)
        return match.groupdict() if match else None

    @classmethod
    def axes(cls) -> list[str]:
        """The grid values its branch names carry (the wildcards of its rule): alpha, beta."""
        return re.findall(r"\{(\w+)\}", cls.pattern)

    @classmethod
    def mask_values(cls, config: dict, point: dict) -> dict[str, float | None]:
        """The α and β of a branch's mask stores, recorded in its metrics.json (None: no masks)."""
        return {"alpha": None, "beta": None}

    @classmethod
    def stores(cls, experiment: str, split: str, alpha, beta) -> dict[str, str]:
        """The mask stores (kind -> folder) a branch reads on one split, for its :meth:`mask_values`."""
        return {}

    @classmethod
    def own_settings(cls, config: dict) -> dict | None:
        """The kind's settings beyond the retrain section (whose recipe every branch's fingerprint holds):
        for a kind declared in retrain.kind_modules, retrain.kind_settings.<name>. Each branch's
        fingerprint holds them, so a changed setting retrains this kind's branches and no other's."""
        return config["retrain"]["kind_settings"].get(cls.name)

    @classmethod
    def settings(cls, config: dict) -> dict:
        """What the kind's jobs read (their ``params.settings``)."""
        return {key: config["retrain"][key] for key in SHARED_SETTINGS} | (cls.own_settings(config) or {})

    @classmethod
    def problems(cls, config: dict) -> list[str]:
        """What the kind needs of the config, checked when an experiment retrains it."""
        return []

    # ----------------------------------------------------------------- training (in the job)

    attn_layer: type | None = None  # timm attention layer the ViT is built with (None: timm's)

    def __init__(self, settings: dict, alpha: float | None = None, beta: float | None = None):
        self.settings = settings
        self.values = {key: value for key, value in (("alpha", alpha), ("beta", beta)) if value is not None}

    def model(self, vit):
        from patchinteract.models.masked import MaskedViT

        return MaskedViT(vit, cls_in_window=self.settings["cls_in_window"], dip_mode=self.settings["dip_mode"])

    def mask_arrays(self, stores: dict[str, Path]) -> dict[str, str]:
        """Mask array name -> the store holding it, for one split."""
        return {}

    @property
    def loss_weights(self) -> tuple[float, float]:
        return (1.0, 1.0)

    def interactions(self, val_stores: dict[str, Path], image_ids, n_patches: int) -> float:
        """E_O on val: N² for plain attention."""
        return float(n_patches * n_patches)

    def evaluate(self, model, loader, device, val_stores: dict[str, Path], image_ids, n_patches):
        """(metrics, per-image predictions, figure arrays or None) of the val split (``image_ids``: all of its
        images; ``loader``: this rank's block of them)."""
        from patchinteract.training.evaluation import evaluate_classifier

        metrics, predictions = evaluate_classifier(model, loader, device)
        return metrics | {"eo": self.interactions(val_stores, image_ids, n_patches)}, predictions, None

    def write_outputs(self, outputs: dict[str, str], figure, vit) -> None:
        """Write the files of ``outputs`` (the rule's, by name) that the kind adds, from :meth:`evaluate`'s
        figure arrays."""


declare(ViTBranch)


def masks_of_both_splits(kind: type[ViTBranch], config: dict) -> list[str]:
    """A kind that reads mask stores needs them for train and val."""
    if {"train", "val"} <= set(config["attention"]["splits"]):
        return []
    return [f"attention.splits: retraining {kind.name} needs masks of train and val"]


def mean_interactions(store: Path | str, image_ids) -> float:
    """E_O: the mean over images of a mask store's O (window store: eq. 5; field store: over kept patches)."""
    from patchinteract.training.retraining import load_mask_array

    return float(load_mask_array(store, "o", image_ids).double().mean())


class WindowBranch(ViTBranch):
    """AWD: each patch attends within its window of eq. 4, one branch per α of ``alphas``."""

    name = "awd"
    pattern = "awd_a{alpha}"

    @classmethod
    def points(cls, config):
        return [{"alpha": alpha} for alpha in config["alphas"]]

    @classmethod
    def mask_values(cls, config, point):
        return {"alpha": point["alpha"], "beta": 0.0}

    @classmethod
    def stores(cls, experiment, split, alpha, beta):
        return {"window": paths.window_store(experiment, split, alpha)}

    @classmethod
    def problems(cls, config):
        return masks_of_both_splits(cls, config)

    def mask_arrays(self, stores):
        return {"window": stores["window"]}

    def interactions(self, val_stores, image_ids, n_patches):
        return mean_interactions(val_stores["window"], image_ids)


class WindowTokenBranch(WindowBranch):
    """AWD + DIP: windows, and only the kept tokens (O counted over kept patches, from the field store), one
    branch per (α, β) of ``dip_alphas`` × ``betas``."""

    name = "awd_dip"
    pattern = "awd_dip_a{alpha}_b{beta}"

    @classmethod
    def points(cls, config):
        return [{"alpha": alpha, "beta": beta} for alpha in config["dip_alphas"] for beta in config["betas"]]

    @classmethod
    def mask_values(cls, config, point):
        return {"alpha": point["alpha"], "beta": point["beta"]}

    @classmethod
    def stores(cls, experiment, split, alpha, beta):
        stores = {
            "window": paths.window_store(experiment, split, alpha),
            "keep": paths.keep_store(experiment, split, beta),
        }
        if split == "val":  # E_O counts kept patches only
            stores["fields"] = paths.field_store(experiment, split, alpha, beta)
        return stores

    @classmethod
    def problems(cls, config):
        grid = (
            []
            if config["betas"] and config["dip_alphas"]
            else ["betas, dip_alphas: awd_dip branches need at least one of each"]
        )
        return masks_of_both_splits(cls, config) + grid

    def mask_arrays(self, stores):
        return {"window": stores["window"], "keep": stores["keep"]}

    def interactions(self, val_stores, image_ids, n_patches):
        return mean_interactions(val_stores["fields"], image_ids)


class WindowFreeBranch(ViTBranch):
    """WinFT (eq. 8-13): predicts its own windows, supervised by the responsive fields of the winft
    section's (α, β); its settings are that section."""

    name = "winft"
    pattern = "winft"
    outputs = {"figure": "figure_windows.zarr"}  # its predicted windows of the first val images (Fig. 10)

    @classmethod
    def mask_values(cls, config, point):
        return {"alpha": config["winft"]["alpha"], "beta": config["winft"]["beta"]}

    @classmethod
    def stores(cls, experiment, split, alpha, beta):
        return {"fields": paths.field_store(experiment, split, alpha, beta)}

    @classmethod
    def own_settings(cls, config):
        return config["winft"]

    @classmethod
    def settings(cls, config):
        return config["winft"]

    @classmethod
    def problems(cls, config):
        return masks_of_both_splits(cls, config)

    @property
    def attn_layer(self):
        from patchinteract.models.winft import WindowFreeAttention

        return WindowFreeAttention

    def model(self, vit):
        from patchinteract.models.winft import WindowFreeViT

        return WindowFreeViT(vit, mask_mode=self.settings["mask_mode"], target_kind=self.settings["target"])

    def mask_arrays(self, stores):
        return {"field_box" if self.settings["target"] == "box" else "field_members": stores["fields"]}

    @property
    def loss_weights(self):
        return (self.settings["ce_weight"], self.settings["bce_weight"])

    def evaluate(self, model, loader, device, val_stores, image_ids, n_patches):
        from patchinteract.training.evaluation import evaluate_windows

        metrics, predictions = evaluate_windows(model, loader, device, keep_first=self.settings["figure_images"])
        return metrics, predictions, metrics.pop("figure")

    def write_outputs(self, outputs, figure, vit):
        from patchinteract.models.vit import patch_grid
        from patchinteract.stores.chunked import store_folder, write_arrays
        from patchinteract.stores.specs import winft_figure_specs

        attributes = {"grid": list(patch_grid(vit)), "target": self.settings["target"]}
        specs = winft_figure_specs(len(vit.blocks), figure["target"].shape[-1])
        write_arrays(store_folder(outputs["figure"]), figure, specs, attributes)


# kind modules this process has run: file -> module
_LOADED: dict[Path, object] = {}


def load_kind_module(path: str | Path) -> None:
    """Run a Python file that declares more kinds (retrain.kind_modules), once per process."""
    path = Path(path).resolve()
    if path in _LOADED:
        return
    spec = importlib.util.spec_from_file_location(f"patchinteract_branch_kinds_{len(_LOADED)}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    _LOADED[path] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del _LOADED[path]
        raise


def declared_in(kind: type[ViTBranch], files: list[str]) -> str | None:
    """Which of ``files`` (retrain.kind_modules, as written) declares ``kind`` (None: none, a built-in kind)."""
    for file in files:
        module = _LOADED.get(Path(file).resolve())
        if module is not None and kind.__module__ == module.__name__:
            return file
    return None


def branch_kind(method: str, kind_module: str | None = None) -> type[ViTBranch]:
    """The kind of a method name (``kind_module``: the file declaring it, for a kind from retrain.kind_modules)."""
    if kind_module is not None:
        load_kind_module(kind_module)
    if method not in KINDS:
        raise ValueError(f"unknown retraining method '{method}' (one of {list(KINDS)})")
    return KINDS[method]


def branch_of(method: str, settings: dict, alpha: float | None = None, beta: float | None = None) -> ViTBranch:
    """A job's branch of a built-in kind (or of one whose module is loaded)."""
    return branch_kind(method)(settings, alpha, beta)

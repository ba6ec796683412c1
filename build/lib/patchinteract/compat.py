"""Make ``import torchvision`` (and so ``import timm``) work with a CPU-only torch.

Why: the torchvision wheel that matches torch 2.13.0 on PyPI is a CUDA build.
Next to a CPU build of torch its C++ extension (``torchvision/_C.so``) does not
load, and ``torchvision/_meta_registrations.py`` then fails at import time with
``RuntimeError: operator torchvision::nms does not exist``, because it registers
fake kernels for ``torchvision::nms`` and ``torchvision::qnms`` without checking
that the extension loaded (upstream: https://github.com/pytorch/vision/issues/9085).
timm imports torchvision, so timm fails too.

What: if the extension cannot be loaded, define the schemas of those two
operators (no kernels) so the registrations succeed. torchvision's transforms
and datasets then work; ``torchvision.ops`` raises a clear "no kernel" error if
called, and this project never calls ``torchvision.ops`` or ``torchvision.io``.
Where the extension loads (a matching CUDA install) this module does nothing.

``patchinteract/__init__.py`` imports this module first, so any
``import patchinteract...`` placed before ``import timm`` is enough.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

# The two operators that torchvision registers fake kernels for unconditionally.
_UNGUARDED_OPERATOR_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}

# Kept alive for the life of the process: the definitions vanish with it.
_schema_library: torch.library.Library | None = None


def torchvision_extension_loads() -> bool:
    """True when torchvision is absent or its compiled extension loads."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    libraries = sorted(package_dir.glob("_C*.so")) + sorted(package_dir.glob("_C*.pyd"))
    if not libraries:
        return False
    try:
        torch.ops.load_library(str(libraries[0]))
    except (OSError, RuntimeError):
        return False
    return True


def patch_torchvision_operators() -> bool:
    """Define the operator schemas torchvision needs at import time. Returns True if it patched."""
    global _schema_library
    if _schema_library is not None or torchvision_extension_loads():
        return False
    _schema_library = torch.library.Library("torchvision", "DEF")
    for schema in _UNGUARDED_OPERATOR_SCHEMAS.values():
        _schema_library.define(schema)
    return True


PATCHED = patch_torchvision_operators()

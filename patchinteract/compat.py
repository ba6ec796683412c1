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

When: just before torchvision is first imported. ``patchinteract/__init__.py``
calls :func:`install`, which puts a finder at the front of ``sys.meta_path``
that applies the patch when ``torchvision`` is about to be imported, so any
``import patchinteract...`` placed before ``import timm`` is enough, and a job
that never touches timm or torchvision (mask stores, tables) never pays for
importing torch (2 s per job).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

# The two operators that torchvision registers fake kernels for unconditionally.
_UNGUARDED_OPERATOR_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}

# Kept alive for the life of the process: the definitions vanish with it.
_schema_library = None

# Whether this process needed the patch; None until torchvision is imported (or the patch is applied by hand).
PATCHED: bool | None = None


def torchvision_extension_loads() -> bool:
    """True when torchvision is absent or its compiled extension loads."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    libraries = sorted(package_dir.glob("_C*.so")) + sorted(package_dir.glob("_C*.pyd"))
    if not libraries:
        return False
    import torch

    try:
        torch.ops.load_library(str(libraries[0]))
    except (OSError, RuntimeError):
        return False
    return True


def patch_torchvision_operators() -> bool:
    """Define the operator schemas torchvision needs at import time. Returns True if it patched."""
    global _schema_library, PATCHED
    # Called by hand before torchvision was imported: the finder must not patch a second time
    # (finding torchvision's spec below would call it).
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, _PatchBeforeTorchvision)]
    if _schema_library is not None or torchvision_extension_loads():
        PATCHED = bool(PATCHED)
        return False
    import torch

    _schema_library = torch.library.Library("torchvision", "DEF")
    for schema in _UNGUARDED_OPERATOR_SCHEMAS.values():
        _schema_library.define(schema)
    PATCHED = True
    return True


class _PatchBeforeTorchvision(importlib.abc.MetaPathFinder):
    """Applies the patch when ``torchvision`` is about to be imported; finds nothing itself."""

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision":
            patch_torchvision_operators()  # which removes this finder: once is enough
        return None


def install() -> None:
    """Patch just before torchvision is first imported (now, if it is already importing)."""
    if "torchvision" in sys.modules:
        patch_torchvision_operators()
    elif not any(isinstance(finder, _PatchBeforeTorchvision) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PatchBeforeTorchvision())


install()

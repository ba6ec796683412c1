"""The torchvision compatibility shim: timm and torchvision import, and every entry point uses it."""

import re
import subprocess
import sys

from conftest import REPO


def test_timm_and_torchvision_import_after_the_shim():
    code = (
        "import patchinteract.compat as c, timm, torchvision.transforms as T;"
        "print(c.PATCHED, c.torchvision_extension_loads(), T.Compose.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    patched, loads, name = out
    # It patches exactly when the extension cannot load, and is a no-op otherwise.
    assert patched == str(loads == "False")
    assert name == "Compose"


def test_shim_is_idempotent():
    from patchinteract import compat

    compat.patch_torchvision_operators()
    assert compat.patch_torchvision_operators() is False  # second call: nothing to do


def test_the_shim_imports_torch_only_when_torchvision_is_imported():
    """Jobs that never use timm (masks, tables) must not pay for importing torch; timm still imports."""
    code = (
        "import sys, patchinteract.compat as c, patchinteract.masks.mask_stores, patchinteract.data.manifest;"
        "before = ('torch' in sys.modules, c.PATCHED);"
        "import timm;"
        "print(*before, 'torch' in sys.modules, c.PATCHED == (not c.torchvision_extension_loads()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "None", "True", "True"]


IMPORT = re.compile(r"^\s*(?:import|from)\s+(timm|torchvision|patchinteract)\b", re.MULTILINE)


def test_every_entry_point_imports_patchinteract_before_timm_or_torchvision():
    # Modules inside patchinteract/ are safe by construction: patchinteract/__init__.py
    # (which imports the shim) always runs before any of them.
    sources = [
        *REPO.glob("workflow_scripts/*.py"),
        *REPO.glob("tests/*.py"),
        *REPO.glob("benchmarks/*.py"),
        *REPO.glob("notebooks/*.ipynb"),
        *REPO.glob("rules/*.smk"),
    ]
    offenders = []
    for path in sources:
        modules = [m.group(1) for m in IMPORT.finditer(path.read_text())]
        first_vision = next((i for i, m in enumerate(modules) if m in ("timm", "torchvision")), None)
        if first_vision is not None and "patchinteract" not in modules[:first_vision]:
            offenders.append(path.relative_to(REPO))
    assert not offenders, f"import patchinteract before timm/torchvision in {offenders}"

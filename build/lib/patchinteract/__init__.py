"""patchinteract: patch interactions in Vision Transformers (Ma et al., TNNLS 2023).

The compatibility shim is imported first so that ``timm`` and ``torchvision``
import on CPU-only torch builds; see :mod:`patchinteract.compat`.
"""

from patchinteract import compat  # noqa: F401  (must stay the first import)

__version__ = "0.1.0"

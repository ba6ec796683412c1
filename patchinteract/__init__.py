"""patchinteract: patch interactions in Vision Transformers (Ma et al., TNNLS 2023).

The compatibility shim is imported first so that ``timm`` and ``torchvision``
import on CPU-only torch builds; see :mod:`patchinteract.compat`. A job's script imports this package
first: on a local run with a warm server the job continues there (:mod:`patchinteract.warm_start`).
"""

from patchinteract import compat  # noqa: F401  (must stay the first import)
from patchinteract.warm_start import hand_over

hand_over()  # a job's script on a local run continues in a fork of a warm interpreter (if one serves)

__version__ = "0.1.0"

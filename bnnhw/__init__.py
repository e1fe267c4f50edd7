"""bnnhw: hardware and firmware for binarized neural networks, verified bit for bit.

The stable Python interface (SPEC §10): :func:`load_model`, :mod:`bnnhw.golden`
(``forward`` and ``predict``).
"""

from . import golden
from .errors import BnnhwError, InputError, ModelError, ToolError
from .model import Network, load_model, save_model

__all__ = ["load_model", "save_model", "Network", "golden",
           "BnnhwError", "ModelError", "InputError", "ToolError"]
__version__ = "0.1.0"

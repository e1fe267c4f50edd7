"""Exceptions that bnnhw raises on bad input.

Every message names what is wrong and where (file, layer, field, value), so the command line
can print it as one line without a traceback.
"""

__all__ = ["BnnhwError", "ModelError", "InputError", "ToolError"]


class BnnhwError(Exception):
    """Base class of every error bnnhw reports to a user."""


class ModelError(BnnhwError, ValueError):
    """A model (file, layer, parameter) is malformed or inconsistent."""


class InputError(BnnhwError, ValueError):
    """Input data does not fit the model (shape, dtype, range)."""


class ToolError(BnnhwError, RuntimeError):
    """An external tool (simulator, compiler, emulator) is missing or failed."""

"""Where the shared real data lives (../shared/data), for every test folder.

A module with a unique name: several test folders have a conftest.py of their own, so tests
import these helpers from here, never `from conftest import`.
"""

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
BNN_PYNQ = SHARED_DATA / "bnn-pynq"
MNIST = SHARED_DATA / "mnist"


def shared_file(*parts):
    """A file under ../shared/data; fails (never skips) when it is missing."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"shared data file {path} is missing: tests need ../shared/data beside "
                    f"the repository")
    return path



"""Fixtures of the firmware tests: kernel harnesses built once per session for every target."""

import pytest

from fw_helpers import CONFIGS, build_harness


@pytest.fixture(scope="session")
def fw_root(tmp_path_factory):
    return tmp_path_factory.mktemp("fw")


@pytest.fixture(scope="session")
def harnesses(fw_root):
    """name -> Harness for host-scalar, host-neon (SIMDe), aarch64 and armv7 (qemu-user)."""
    return {name: build_harness(name, fw_root / "harness") for name in CONFIGS}


@pytest.fixture(scope="session")
def san_harness(fw_root):
    """The host NEON-through-SIMDe harness under ASan + UBSan."""
    return build_harness("host-neon", fw_root / "harness", sanitize=True)

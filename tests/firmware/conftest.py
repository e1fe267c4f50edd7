"""Fixtures of the firmware tests: kernel harnesses built once per session for every target."""

import pytest

from fw_helpers import CONFIGS, PATHS_RUN, build_harness


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


def pytest_terminal_summary(terminalreporter):
    """Which kernel paths the firmware tests ran, per build (no path is skipped silently: the
    host fixtures fail when the CPU has an x86 SIMD path that the build does not offer)."""
    if not PATHS_RUN:
        return
    order = {"scalar": 0, "neon": 1, "avx2": 2, "avx512bw": 3, "avx512vpopcnt": 4}
    terminalreporter.section("firmware kernel paths run")
    for (config, kind), paths in sorted(PATHS_RUN.items()):
        names = sorted(paths, key=lambda k: order.get(k, 9))
        terminalreporter.write_line(f"{config} ({kind}): {', '.join(names)}")

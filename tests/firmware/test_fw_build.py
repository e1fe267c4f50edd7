"""The firmware Makefile: per-target CC / AR, and a compiler named anything (CC=clang, cc-12)."""

import numpy as np
import pytest

from bnnhw.model.packing import pack_feature_map

from fw_helpers import OP_POOL, Harness, make, require_tools

pytestmark = pytest.mark.firmware


def pool_works(harness, tmp_path):
    bits = (np.random.default_rng(0).random((4, 4, 70)) < 0.3).astype(np.uint8)
    packed = pack_feature_map(np.moveaxis(bits, -1, 0)[None], 64)[0]
    got = np.frombuffer(harness.call(OP_POOL, 0, [4, 4, 70, 2, 2], [packed], tmp_path), "<u8")
    ref = bits.reshape(2, 2, 2, 2, 70).max(axis=(1, 3))
    assert np.array_equal(got, pack_feature_map(np.moveaxis(ref, -1, 0)[None], 64)[0]
                          .reshape(-1))


@pytest.mark.parametrize("target,cc,emulator", [
    # compiler names that do not end in "gcc": the archiver used to be derived as $(CC:gcc=ar)
    ("host", "cc", None),
    ("aarch64", "aarch64-linux-gnu-gcc-12", "qemu-aarch64"),
])
def test_compiler_not_named_gcc(tmp_path, target, cc, emulator):
    require_tools(cc, *([emulator] if emulator else []))
    build = tmp_path / "b"
    make(f"TARGET={target}", "IMPL=scalar", f"BUILD={build}", f"CC={cc}", "harness")
    assert (build / "libbnn.a").stat().st_size > 0
    pool_works(Harness(build / "bnn_harness", emulator, False, name=f"{target} CC={cc}"),
               tmp_path)


def test_explicit_archiver(tmp_path):
    """AR on the command line is the one used (a wrong one fails the build loudly)."""
    build = tmp_path / "b"
    make("TARGET=host", "IMPL=scalar", f"BUILD={build}", "AR=gcc-ar", "harness")
    pool_works(Harness(build / "bnn_harness", None, False, name="host AR=gcc-ar"), tmp_path)
    with pytest.raises(AssertionError, match="make .* failed"):
        make("TARGET=host", "IMPL=scalar", f"BUILD={tmp_path / 'c'}", "AR=/nonexistent/ar",
             "lib")

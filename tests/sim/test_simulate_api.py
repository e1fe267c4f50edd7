"""``bnnhw.simulate.simulate``: scores and cycle statistics of the generated hardware."""

import numpy as np
import pytest

from bnnhw import golden
from bnnhw.simulate import simulate
from support.networks import random_dense_net

pytestmark = pytest.mark.cocotb


def test_simulate_returns_golden_scores_and_cycles(tmp_path):
    net = random_dense_net(np.random.default_rng(21), sizes=(10, 6), shape=(1, 4, 4),
                           name="api_dense")
    folding = {"fc0": {"PE": 2, "SIMD": 4}, "fc1": {"PE": 3, "SIMD": 5}}
    x = np.random.default_rng(22).integers(0, 256, size=(4, 4, 4), dtype=np.uint8)
    scores, stats = simulate(net, x, folding=folding, build_dir=tmp_path / "b", stress=True)
    assert scores.dtype == np.int64 and np.array_equal(scores, golden.forward(net, x))
    # Slowest layer: fc0 with ceil(10/2) * ceil(16/4) = 20 cycles per image.
    assert stats["cycles_per_image"] == stats["cycles_per_image_estimate"] == 20
    assert stats["latency_cycles"] > 0
    again, stats2 = simulate(net, x, folding=folding, build_dir=tmp_path / "b")
    assert np.array_equal(again, scores) and stats2["build_seconds"] == 0.0

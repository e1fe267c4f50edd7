"""Batch norm + sign folded into thresholds (SPEC §5) against the float sign(BN(v))."""

import numpy as np
import pytest

from bnnhw.errors import ModelError
from bnnhw.model import fold_batchnorm


def float_sign_bn(v, gamma, beta, mean, var, eps):
    # Written out independently of bnnhw.model.batchnorm: sign(0) = +1.
    out = gamma * (v - mean) / np.sqrt(var + eps) + beta
    return np.where(out >= 0, 1, 0)


def folded(v, t, neg):
    return np.where(neg, v <= t, v >= t).astype(int)


def check_all(gamma, beta, mean, var, eps, lo, hi):
    t, neg = fold_batchnorm(gamma, beta, mean, var, eps, (lo, hi), layer="bn")
    v = np.arange(lo, hi + 1)[:, None]
    expected = float_sign_bn(v.astype(np.float64), np.asarray(gamma, float),
                             np.asarray(beta, float), np.asarray(mean, float),
                             np.asarray(var, float), eps)
    assert np.array_equal(folded(v, t, neg), expected)
    return t, neg


def test_exact_ties_both_polarities():
    # var + eps = 1 exactly, so tau = mean - beta / gamma is an integer: v == tau is a tie.
    gamma = np.array([1.0, -1.0, 2.0, -0.5])
    beta = np.array([0.0, 0.0, -4.0, 1.5])
    mean = np.array([5.0, 5.0, 1.0, -2.0])
    t, neg = check_all(gamma, beta, mean, np.full(4, 0.75), 0.25, -20, 20)
    assert t.tolist() == [5, 5, 3, 1] and neg.tolist() == [False, True, False, True]


def test_gamma_zero_is_constant():
    t, neg = check_all([0.0, 0.0], [0.0, -1.0], [3.0, 3.0], [1.0, 1.0], 1e-5, -10, 10)
    v = np.arange(-10, 11)[:, None]
    assert folded(v, t, neg)[:, 0].tolist() == [1] * 21      # beta >= 0: always +1
    assert folded(v, t, neg)[:, 1].tolist() == [0] * 21      # beta < 0: always -1


def test_thresholds_outside_the_clip_range():
    # tau = 500 and -500 with the clip range [-127, 127]: constant outputs, small thresholds.
    t, neg = check_all([1.0, 1.0, -1.0, -1.0], [-500.0, 500.0, -500.0, 500.0], [0.0] * 4,
                       [1.0] * 4, 0.0, -127, 127)
    assert np.all(np.abs(t) <= 128)
    v = np.arange(-127, 128)[:, None]
    assert folded(v, t, neg).sum(axis=0).tolist() == [0, 255, 0, 255]


@pytest.mark.parametrize("seed", range(20))
def test_random_parameters_every_integer(seed):
    rng = np.random.default_rng(seed)
    n = 64
    gamma = rng.normal(0, 1, n) * rng.choice([1, 1e-3, 1e3], n)
    gamma[rng.random(n) < 0.1] = 0.0
    beta = rng.normal(0, 50, n)
    mean = rng.normal(0, 50, n)
    var = rng.exponential(100, n)
    var[rng.random(n) < 0.1] = 0.0
    check_all(gamma, beta, mean, var, 1e-5, -int(rng.integers(1, 300)), int(rng.integers(1, 300)))


def test_near_ties_are_settled_by_the_float_reference():
    # tau a hair above / below an integer: the closed form could round the other way.
    gamma = np.array([3.0, 3.0, -3.0, -3.0, 0.1])
    mean = np.array([7.0, 7.0, 7.0, 7.0, 0.3])
    beta = np.array([1e-12, -1e-12, 1e-12, -1e-12, -0.03])
    check_all(gamma, beta, mean, np.ones(5), 1e-3, -50, 50)


@pytest.mark.parametrize("field,value,message", [
    ("var", [1.0, -1.0], r"layer 'bn': batch-norm var\[1\] must be non-negative, not -1.0"),
    ("gamma", [1.0, np.nan], r"layer 'bn': batch-norm gamma\[1\] must be finite, not nan"),
    ("mean", [np.inf, 0.0], r"layer 'bn': batch-norm mean\[0\] must be finite, not inf"),
    ("beta", [1.0], r"layer 'bn': batch-norm beta has 1 channels, not 2"),
])
def test_bad_parameters(field, value, message):
    params = {"gamma": [1.0, 1.0], "beta": [0.0, 0.0], "mean": [0.0, 0.0], "var": [1.0, 1.0]}
    params[field] = value
    with pytest.raises(ModelError, match=message):
        fold_batchnorm(**params, eps=1e-5, value_range=(-5, 5), layer="bn")


def test_zero_variance_and_eps():
    with pytest.raises(ModelError, match=r"var\[0\] \+ eps must be positive"):
        fold_batchnorm([1.0], [0.0], [0.0], [0.0], 0.0, (-5, 5), layer="bn")

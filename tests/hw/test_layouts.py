"""Payload layouts are defined once and match the stream contract."""

import pytest
from amaranth.hdl import Shape, signed, unsigned

from bnnhw.hw.layouts import (ScoreLayout, chunk_shape, chunk_signature, pixel_shape,
                              pixel_signature, score_signature)


def test_shapes():
    assert pixel_shape(64) == unsigned(64)
    assert pixel_shape(3, 8) == unsigned(24)
    assert chunk_shape(32) == unsigned(32)
    assert chunk_shape(3, 8) == unsigned(24)
    layout = ScoreLayout(11)
    assert layout.size == 12
    assert layout["score"].shape == signed(11) and layout["score"].offset == 0
    assert Shape.cast(layout["last"].shape) == unsigned(1) and layout["last"].offset == 11
    assert pixel_signature(4).members["payload"].shape == unsigned(4)
    assert chunk_signature(2, 8).members["payload"].shape == unsigned(16)
    assert score_signature(5).members["payload"].shape == ScoreLayout(5)


def test_validation():
    with pytest.raises(ValueError, match=r"^Channel count must be at least 1, not 0$"):
        pixel_shape(0)
    with pytest.raises(TypeError, match=r"^Score width must be an integer, not 1.5$"):
        ScoreLayout(1.5)

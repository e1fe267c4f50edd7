"""Payload layouts of bnnhw's hardware streams, defined once.

Every stream between components is an :class:`amaranth.lib.stream.Signature` whose payload
comes from one of these functions:

* **pixel**: one beat is one pixel with all its channels, ``unsigned(C * bits)``; channel ``c``
  sits at bits ``[c*bits, (c+1)*bits)``. For binary maps channel ``c`` is bit ``c``
  (:mod:`bnnhw.model.packing`'s convention); multi-bit codes are two's complement.
* **chunk**: the input of a matrix-vector unit, ``unsigned(SIMD * bits)``; element ``j`` of a
  vector sits in beat ``j // SIMD`` at lane ``j % SIMD``. Vectors of a convolution are ordered
  ``[ky][kx][c]`` (channels innermost).
* **score**: one beat per class, :class:`ScoreLayout` ``{"score": signed(w), "last": 1}``,
  ``last`` set on the final class of each image.
"""

from amaranth.hdl import signed, unsigned
from amaranth.lib import data, stream

from ..plan.params import check_int

__all__ = ["pixel_shape", "chunk_shape", "ScoreLayout", "pixel_signature", "chunk_signature",
           "score_signature", "to_shape", "from_plan"]


def _check_positive(name, value):
    check_int(name, value, 1)


def pixel_shape(channels, bits=1):
    """Payload shape of a pixel beat: ``unsigned(channels * bits)``."""
    _check_positive("Channel count", channels)
    _check_positive("Element width", bits)
    return unsigned(channels * bits)


def chunk_shape(simd, bits=1):
    """Payload shape of a chunk beat: ``unsigned(simd * bits)``."""
    _check_positive("SIMD", simd)
    _check_positive("Element width", bits)
    return unsigned(simd * bits)


class ScoreLayout(data.StructLayout):
    """One class score per beat: ``{"score": signed(score_width), "last": 1}``.

    Parameters
    ----------
    score_width : int
        Width of the two's-complement score.
    """

    def __init__(self, score_width):
        _check_positive("Score width", score_width)
        self.score_width = score_width
        super().__init__({"score": signed(score_width), "last": 1})


def pixel_signature(channels, bits=1):
    """Stream signature of a pixel stream."""
    return stream.Signature(pixel_shape(channels, bits))


def chunk_signature(simd, bits=1):
    """Stream signature of a chunk stream."""
    return stream.Signature(chunk_shape(simd, bits))


def score_signature(score_width):
    """Stream signature of a score stream."""
    return stream.Signature(ScoreLayout(score_width))


def to_shape(int_shape):
    """The Amaranth shape of a plan's :class:`~bnnhw.plan.tables.IntShape`."""
    return signed(int_shape.width) if int_shape.signed else unsigned(int_shape.width)


def from_plan(*names):
    """Class decorator: read-only properties ``names`` that return ``self.plan.<name>``.

    Components keep their figures on their plan (:mod:`bnnhw.plan.stages`), derived once;
    these properties let callers read them from the component as before.
    """
    def decorate(cls):
        for name in names:
            def get(self, name=name):
                return getattr(self.plan, name)
            get.__doc__ = f"``plan.{name}`` (see :mod:`bnnhw.plan.stages`)."
            setattr(cls, name, property(get))
        return cls
    return decorate

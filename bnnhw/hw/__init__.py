"""Amaranth hardware components of bnnhw (stream contract: see :mod:`bnnhw.hw.layouts`).

Submodules are imported explicitly (``from bnnhw.hw.network import NetworkCore``) so that
importing :mod:`bnnhw` never pulls in Amaranth.
"""

"""The hardware plan: pure Python (never imports Amaranth).

:mod:`bnnhw.plan.folding` resolves and checks PE / SIMD per compute layer. The plan of a
whole core (stages, widths, beats, cycles, memories, tables) is computed once from a network
and its folding; the Amaranth elaboration, the manifest, the firmware generator and the
reports read it.
"""

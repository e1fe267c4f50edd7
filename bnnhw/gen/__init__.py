"""Backends that write files: Verilog + manifest + golden vectors, cocotb runs, resource reports.

Imports go one way: :mod:`bnnhw.gen` reads :mod:`bnnhw.model` and :mod:`bnnhw.hw`, never
the reverse.
"""

from .verilog import generate, generate_component, port_manifest, to_verilog

__all__ = ["generate", "generate_component", "port_manifest", "to_verilog"]

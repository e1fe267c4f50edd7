"""Verilator lint of generated Verilog, with a short list of justified waivers.

``verilator --lint-only -Wall`` on Amaranth's output reports a few warning classes that come
from how Amaranth writes Verilog, not from design errors:

``DECLFILENAME``
    Amaranth writes the whole hierarchy into one file and names submodules ``top.sub``.
``PROCASSINIT``
    Registers get their initial (power-on) value in the declaration *and* a synchronous
    reset in the process: both are intended (FPGA init values plus ``rst``).
``UNUSEDSIGNAL``
    Intermediate wires of which only some bits are used (slices of wider arithmetic results)
    and alias wires for struct fields (``o_stream__payload.score``).
``WIDTHEXPAND`` / ``WIDTHTRUNC``
    Amaranth relies on Verilog's implicit zero/sign extension and truncation in arithmetic
    and assignments, whose results it has already sized exactly; the bit-exact simulations
    against the golden model check the arithmetic.
``UNUSEDPARAM``
    Memory-inference parameters that Yosys' Verilog writer emits.
``ASCRANGE``
    Zero-width signals (``Signal(range(1))``: a counter or address over a single element,
    e.g. a window row index when the kernel has one row in flight) are declared by Yosys'
    writer as ``wire [-1:0]``; nothing reads them.

Anything else (``%Error``, ``MULTIDRIVEN``, ``LATCH``, ``COMBDLY``, ``UNOPTFLAT``, ...) is a
finding.
"""

import re

from .. import procs
from .cocotb_run import simulator_env

__all__ = ["WAIVERS", "lint"]

WAIVERS = ("DECLFILENAME", "PROCASSINIT", "UNUSEDSIGNAL", "WIDTHEXPAND", "WIDTHTRUNC",
           "UNUSEDPARAM", "ASCRANGE")


def lint(verilog_path, top=None, *, waivers=WAIVERS):
    """Run ``verilator --lint-only -Wall`` on a Verilog file.

    Verilator runs once with every warning on; the waivers are applied to its report (a
    second, waived run would repeat the whole parse, minutes on CNV-sized netlists).

    Returns
    -------
    (int, dict, str)
        0 when nothing but waived warnings is reported (else 1), ``{warning_class: count}`` of
        everything ``-Wall`` reports, and the report without the waived messages.
    """
    env = simulator_env("verilator")
    args = ["verilator", "--lint-only", "-Wall"] + (["--top-module", top] if top else [])
    proc = procs.run(args + [str(verilog_path)], env=env)
    counts, kept, waived_message = {}, [], False
    for line in proc.stderr.splitlines():
        m = re.match(r"^%(Warning|Error)-?([A-Z0-9_]*)", line)
        if m:
            key = m.group(2) or m.group(1).upper()
            counts[key] = counts.get(key, 0) + 1
            waived_message = key in waivers
        elif not line.startswith(" "):
            waived_message = False    # a line of its own (e.g. "Exiting due to ...")
        if not waived_message:
            kept.append(line)
    findings = set(counts) - set(waivers) - {"ERROR"}
    # "%Error: Exiting due to N warning(s)" alone means only warnings were reported.
    errors = [l for l in kept if l.startswith("%Error") and "Exiting due to" not in l]
    clean = not findings and not errors and (proc.returncode == 0 or counts)
    return (0 if clean else 1), counts, "\n".join(kept)

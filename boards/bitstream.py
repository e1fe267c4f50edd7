"""Whole-network board builds: estimate and fit, synthesis, place and route, bitstream, report.

The ``bitstream`` step of the build flow (:mod:`bnnhw.flow.steps`) runs :func:`build_board`
in the build folder: the network's plan with its memories mapped onto the board's device
(:class:`bnnhw.plan.memory.MemoryMap`), the fit estimate (refused before synthesis when it does
not fit), the pin wrapper (:class:`~bnnhw.boards.common.UartNetwork`) with the board's clock
(a PLL where the board needs one, :mod:`bnnhw.boards.clocks`), then Yosys, nextpnr and the
bitstream packer one after the other (a rich progress display shows synth, place, route and
pack with their times), a second fit check on the synthesized cell counts before place and
route, and the report (``board/report.json`` and ``board/report.md``).
"""

import json
import re
import shlex
import subprocess
import time
from pathlib import Path

from amaranth.hdl import Module
from amaranth.lib import wiring

from bnnhw.errors import InputError, ToolError
from bnnhw.flow.build import write_json
from bnnhw.plan.devices import device as get_device
from bnnhw.plan.estimate import FitError, check_fit, estimate

__all__ = ["BoardTop", "build_board", "synth_counts", "PHASES"]

#: The phases the progress display shows, in order.
PHASES = ("synth", "place", "route", "pack")
#: Whether builds show the rich progress display when not told (the CLI turns it on).
SHOW_PROGRESS = False


class BoardTop(wiring.Component):
    """The board's top: its clock (PLL) and the network behind the UART."""

    def __init__(self, *, core, board, freq_hz, model_id, baud=115200):
        from . import BOARDS
        self.core, self.board, self.freq_hz = core, board, freq_hz
        self.model_id, self.baud = model_id, baud
        self.spec = BOARDS[board]
        self.achieved_hz = None
        super().__init__({})

    def elaborate(self, platform):
        from .clocks import make_clock
        from .common import UartNetwork
        m = Module()
        clock, f, params = make_clock(platform, get_device(self.spec["device"]).family
                                      if self.spec.get("pll") else None, self.freq_hz)
        self.achieved_hz, self.pll_params = f, params
        m.submodules.clock = clock
        m.submodules.net = UartNetwork(core=self.core, clock_hz=f, baud=self.baud,
                                       model_id=self.model_id)
        return m


def synth_counts(family, cells):
    """``{"lut", "ff", "bram", "dsp"}`` from Yosys' ``num_cells_by_type`` (LUT4 equivalents:
    carry cells count as the LUTs they hold, LUT RAM cells as their LUTs)."""
    def count(pattern):
        return sum(n for t, n in cells.items() if re.fullmatch(pattern, t))
    if family == "ecp5":
        return {"lut": count(r"LUT4") + 2 * count(r"CCU2C") + 4 * count(r"TRELLIS_DPR16X4"),
                "ff": count(r"TRELLIS_FF"), "bram": count(r"DP16KD|PDPW16KD"),
                "dsp": count(r"MULT18X18D")}
    if family == "ice40":
        return {"lut": count(r"SB_LUT4"), "ff": count(r"SB_DFF\w*"),
                "bram": count(r"SB_RAM40_4K"), "dsp": count(r"SB_MAC16")}
    if family == "gowin":
        return {"lut": count(r"LUT[1-4]") + count(r"ALU") + 4 * count(r"RAM16SDP\d"),
                "ff": count(r"DFF\w*"), "bram": count(r"SDPB|DPB|SP|SPX9|DPX9B|SDPX9B"),
                "dsp": count(r"MULT\w+")}
    raise InputError(f"unknown FPGA family {family!r}")


def _commands(folder):
    """The tool command lines of amaranth's generated build script, in order."""
    script = (folder / "build_top.sh").read_text()
    return [line for line in script.splitlines() if line.startswith('"$')]


def _phase_of(line):
    if re.search(r"[Pp]lac(er|ing)|HeAP|SA placement", line):
        return "place"
    if re.search(r"[Rr]out(er|ing)", line):
        return "route"
    return None


class _Progress:
    """A rich progress display: one row per phase with its time (quiet when ``show`` is
    False, the times are kept either way)."""

    def __init__(self, show, title):
        self.show, self.times, self.current, self.start = show, {}, None, None
        self.progress = None
        if show:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
            self.progress = Progress(SpinnerColumn(finished_text="[green]done"),
                                     TextColumn("{task.description:<8}"), TimeElapsedColumn(),
                                     TextColumn("{task.fields[note]}"), transient=False)
            self.progress.start()
            self.progress.console.print(title)
            self.tasks = {p: self.progress.add_task(p, total=1, start=False, note="")
                          for p in PHASES}

    def enter(self, phase, note=""):
        if phase == self.current:
            return
        self.leave()
        self.current, self.start = phase, time.monotonic()
        if self.progress:
            self.progress.start_task(self.tasks[phase])
            self.progress.update(self.tasks[phase], note=note)

    def leave(self, note=None):
        if self.current is None:
            return
        self.times[self.current] = round(time.monotonic() - self.start, 1)
        if self.progress:
            kw = {} if note is None else {"note": note}
            self.progress.update(self.tasks[self.current], completed=1, **kw)
        self.current = None

    def close(self):
        self.leave()
        if self.progress:
            self.progress.stop()


def _himbaechel_args(args):
    """Amaranth 0.5 writes the legacy ``nextpnr-gowin`` command line; nextpnr-himbaechel takes
    the same design with the family and the constraints as ``--vopt`` options."""
    out, i = [], 0
    while i < len(args):
        if args[i] in ("--family", "--cst"):
            out += ["--vopt", f"{args[i][2:]}={args[i + 1]}"]
            i += 2
        else:
            out.append(args[i])
            i += 1
    return out


def _run_tool(line, folder, env, progress, phase, log):
    """Run one command line of the build script; nextpnr's log switches place/route."""
    args = shlex.split(line)
    if args[0] == "$NEXTPNR_GOWIN":
        args = _himbaechel_args(args)
    args[0] = env[args[0].strip("$")] if args[0].startswith("$") else args[0]
    args = [a for a in args if a != "--quiet"]
    progress.enter(phase)
    tail = []
    with open(log, "a") as logf:
        proc = subprocess.Popen(args, cwd=folder, env=env["__env__"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        for text in proc.stdout:
            logf.write(text)
            tail = (tail + [text.rstrip()])[-12:]
            if phase == "place":
                p = _phase_of(text)
                if p == "route":
                    progress.enter("route")
        rc = proc.wait()
    if rc != 0:
        raise ToolError(f"{Path(args[0]).name} failed (exit {rc}) in {folder}: "
                        + " | ".join(t for t in tail if t)[-600:])


def _tool_env(board_spec):
    """The board's tool variables (paths from :func:`bnnhw.tools.yowasp_env`, which owns the
    tool names) and, under ``"__env__"``, the whole environment to run them in."""
    import os

    from bnnhw.tools import yowasp_env
    wanted = tuple(board_spec["tools"])
    with yowasp_env(wanted) as env:
        full = dict(os.environ)
    env = {k: full[k] for k in wanted}
    env["__env__"] = full
    return env


def build_board(net, folding, board, out, *, freq_mhz=None, seed=1, show_progress=None,
                baud=115200):
    """Build ``net`` at ``folding`` for ``board`` into the folder ``out``.

    Returns the report dict (also written as ``out/report.json`` and ``out/report.md``).
    Raises :class:`~bnnhw.plan.estimate.FitError` when the estimate (before synthesis) or the
    synthesized design (before place and route) does not fit the board's device.
    """
    from bnnhw.plan.core import CorePlan
    from bnnhw.hw.network import NetworkCore

    from . import BOARDS
    if board not in BOARDS:
        raise InputError(f"board must be one of {', '.join(BOARDS)}, not {board!r}")
    spec = BOARDS[board]
    dev = get_device(spec["device"])
    freq_mhz = float(freq_mhz or spec["default_mhz"])
    if show_progress is None:
        show_progress = SHOW_PROGRESS
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()

    # 1. Plan with the device's memory map, and the fit estimate (before any tool runs).
    plan, mm = CorePlan.for_device(net, folding, dev)
    est = estimate(plan, dev, memory_map=mm)
    write_json(out / "estimate.json", est)
    check_fit(est, dev, what="estimate from the plan, before synthesis")

    # 2. The design and amaranth's build files.
    platform = spec["platform"]()
    top = BoardTop(core=NetworkCore(plan=plan), board=board, freq_hz=freq_mhz * 1e6,
                   model_id=net.fingerprint(), baud=baud)
    overrides = {"nextpnr_opts": f"--seed {seed} --report report.json --timing-allow-fail",
                 "script_after_synth": "tee -q -o synth_stat.json stat -json"}
    overrides.update(spec.get("overrides", {}))
    if spec.get("freq_opt"):
        overrides["nextpnr_opts"] += f" --freq {freq_mhz}"
    if spec.get("nextpnr_extra"):
        overrides["nextpnr_opts"] += " " + spec["nextpnr_extra"]
    plan_files = platform.prepare(top, name="top", **overrides)
    plan_files.extract(out)
    achieved = top.achieved_hz / 1e6
    env = _tool_env(spec)
    log = out / "tools.log"
    log.write_text("")
    progress = _Progress(show_progress, f"[bold]{net.name}[/] on {board} ({dev.name}) at "
                                        f"{achieved:.2f} MHz")
    try:
        commands = _commands(out)
        if len(commands) != 3:
            raise ToolError(f"unexpected build script for {board}: {len(commands)} commands")
        _run_tool(commands[0], out, env, progress, "synth", log)
        stat = json.loads((out / "synth_stat.json").read_text())["design"]
        cells = {k: v for k, v in stat["num_cells_by_type"].items()
                 if not k.startswith("$scopeinfo")}
        synth = synth_counts(dev.family, cells)
        progress.leave(note=f"LUT {synth['lut']:,}  FF {synth['ff']:,}  "
                            f"{dev.fam.bram or 'BRAM'} {synth['bram']}")
        check_fit(synth, dev, what="synthesized, before place and route")
        _run_tool(commands[1], out, env, progress, "place", log)
        _run_tool(commands[2], out, env, progress, "pack", log)
    finally:
        progress.close()

    from bnnhw.gen.resources import nextpnr_report
    rep = nextpnr_report(json.loads((out / "report.json").read_text()))
    fmax_all = rep["fmax_mhz"]
    # The design clock: the one nextpnr constrained closest to the requested frequency.
    clocks = rep["constraint_mhz"]
    design_clock = min(fmax_all, key=lambda c: abs(clocks.get(c, achieved) - achieved)) \
        if fmax_all else None
    fmax = fmax_all.get(design_clock) if design_clock else None
    util = {}
    raw = json.loads((out / "report.json").read_text()).get("utilization", {})
    for key, bels in dev.report_keys.items():
        used = sum(raw.get(b, {}).get("used", 0) for b in bels)
        avail = sum(raw.get(b, {}).get("available", 0) for b in bels)
        util[key] = {"used": used, "available": avail}
    cycles = plan.cycles_per_image
    lat = plan.latency_cycles_estimate
    bitstream = out / spec["bitstream"]
    if not bitstream.exists():
        raise ToolError(f"the bitstream {bitstream} was not written")
    err = {k: (None if not synth[k] else round(100.0 * (est[k] - synth[k]) / synth[k], 1))
           for k in ("lut", "ff", "bram")}
    report = {
        "model": net.name, "fingerprint": net.fingerprint(), "board": board,
        "device": dev.name, "family": dev.family,
        "requested_mhz": freq_mhz, "clock_mhz": round(achieved, 4),
        "pll": top.pll_params, "design_clock": design_clock,
        "fmax_mhz": fmax, "fmax_by_clock": fmax_all,
        "timing_met": bool(fmax is not None and fmax >= achieved),
        "utilization": util, "synthesized": synth, "estimate": {k: est[k] for k in
                                                                ("lut", "ff", "bram", "dsp")},
        "estimate_error_percent": err,
        "memory": mm.describe(),
        "folding": plan.folding, "cycles_per_image": cycles, "bottleneck": plan.bottleneck,
        "images_per_second": round(achieved * 1e6 / cycles, 1),
        "latency_cycles_estimate": lat,
        "latency_us_estimate": round(lat / achieved, 2),
        "phase_seconds": progress.times, "seconds": round(time.monotonic() - start, 1),
        "bitstream": bitstream.name, "uart_baud": baud,
    }
    write_json(out / "report.json.board", report)
    (out / "report.json.board").replace(out / "board_report.json")
    _write_markdown(out / "board_report.md", report)
    return report


def _fmt(v):
    return f"{v:,}" if isinstance(v, int) else str(v)


def _write_markdown(path, r):
    dev = get_device(r["device"])
    lines = [f"# {r['model']} on {r['board']} ({r['device']})", "",
             f"Clock {r['clock_mhz']:.2f} MHz (requested {r['requested_mhz']:g}); post-route "
             f"Fmax {r['fmax_mhz']} MHz: timing **{'met' if r['timing_met'] else 'NOT met'}**. "
             f"{r['cycles_per_image']:,} cycles per image (bottleneck {r['bottleneck']}): "
             f"**{r['images_per_second']:,.0f} images/s**, single-image latency "
             f"{r['latency_us_estimate']:,} µs (plan estimate, {r['latency_cycles_estimate']:,} "
             f"cycles). Build {r['seconds']} s ("
             + ", ".join(f"{k} {v} s" for k, v in r["phase_seconds"].items()) + ").", "",
             "| resource | used (placed) | available | synthesized | estimate | estimate error |",
             "|---|---|---|---|---|---|"]
    for key in ("lut", "ff", "bram", "dsp", "io"):
        u = r["utilization"].get(key, {})
        syn = r["synthesized"].get(key, "")
        est = r["estimate"].get(key, "")
        e = r["estimate_error_percent"].get(key)
        lines.append(f"| {key.upper()} | {_fmt(u.get('used', ''))} | "
                     f"{_fmt(u.get('available', ''))} | {_fmt(syn)} | {_fmt(est)} | "
                     f"{'' if e is None else f'{e:+.1f} %'} |")
    lines += ["", f"Memories per layer ({dev.fam.bram or 'no block RAM'}, "
                  f"{dev.fam.bram_bits:,} bits each):", "",
              "| layer | bits needed | in block RAM | block RAMs | their bits | use | "
              "logic ROM / LUT RAM LUTs |", "|---|---|---|---|---|---|---|"]
    for row in r["memory"]["per_layer"]:
        use = f"{100 * row['block_bits'] / row['bram_bits']:.0f} %" if row["bram_bits"] else "-"
        lines.append(f"| {row['layer']} | {row['bits']:,} | {row['block_bits']:,} | "
                     f"{row['brams']} | {row['bram_bits']:,} | {use} | {row['luts']:,} |")
    t = r["memory"]["totals"]
    lines.append(f"| **total** | {t['bits']:,} | {t['block_bits']:,} | {t['brams']} | "
                 f"{t['brams'] * dev.fam.bram_bits:,} | "
                 f"{(100 * t['block_bits'] / (t['brams'] * dev.fam.bram_bits)) if t['brams'] else 0:.0f} % | "
                 f"{t['luts']:,} |")
    text = "\n".join(lines) + "\n"
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)

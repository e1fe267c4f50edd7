"""cocotb testbench for a generated network core (or any core with the same stream contract).

Generic over ``manifest.json``: port names, payload widths and the output struct layout are
read from it, never re-derived. Configuration comes from a JSON file named by the environment
variable ``BNNHW_TB_CONFIG`` (written by :mod:`bnnhw.gen.cocotb_run`)::

    {"manifest": path, "stimulus": path.npz, "results": path.json, "seed": int,
     "phases": [{"name": str, "valid_prob": float, "ready_prob": float}, ...],
     "stall_cycles": int, "clock_period_ns": int}

``stimulus.npz`` holds ``input_beats`` (uint8 ``[N, beats, bytes_per_beat]``) and, to check,
``scores`` (int64 ``[N, classes]``). Every phase streams all N images back to back: a phase
with ``valid_prob = ready_prob = 1`` measures cycles per image (interval between successive
images' last output beats) and latency (first input beat to last output beat); the others
stress the handshakes with random valid gaps and backpressure. Every score is compared with
the expected one; the results JSON is written whether the test passes or not.
"""

import json
import os
import random
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, RisingEdge, Timer

from streams import StreamMonitor, StreamSink, StreamSource, decode_field


class SimCycles:
    """Cycle index derived from simulation time (no per-cycle coroutine needed)."""

    def __init__(self, period_ns, origin_ns=0):
        self.period = period_ns
        self.origin = origin_ns

    @property
    def now(self):
        return int(round((get_sim_time("ns") - self.origin) / self.period))


def _load_config():
    path = os.environ.get("BNNHW_TB_CONFIG")
    if not path:
        raise RuntimeError("BNNHW_TB_CONFIG is not set: run this testbench through "
                           "bnnhw.gen.cocotb_run")
    with open(path) as f:
        return json.load(f)


def _beats_to_ints(beats):
    # Byte j of a beat sits at payload bits [8j, 8j + 8) (little-endian lanes).
    return [[int.from_bytes(bytes(b), "little") for b in image] for image in beats]


async def _wait_for(cond, period, progress, stall_cycles, what):
    """Wait until ``cond()``; fail if ``progress()`` does not change for ``stall_cycles``."""
    step = max(1, min(1024, stall_cycles // 8))
    last, idle = progress(), 0
    while not cond():
        await Timer(step * period, unit="ns")   # one wake-up per step, not per cycle
        now = progress()
        if now != last:
            last, idle = now, 0
        else:
            idle += step
            if idle >= stall_cycles:
                raise TimeoutError(f"no stream transfer for {idle} cycles while {what}")


@cocotb.test()
async def network_stream(dut):
    cfg = _load_config()
    wall_start = time.monotonic()
    with open(cfg["manifest"]) as f:
        manifest = json.load(f)
    stim = np.load(cfg["stimulus"])
    beats = _beats_to_ints(stim["input_beats"])
    expected = stim["scores"] if "scores" in stim.files else None
    n_images = len(beats)
    streams = manifest["streams"]
    out_fields = streams["o_stream"]["payload_layout"]["fields"]
    num_classes = manifest["core"]["num_classes"]
    period = int(cfg.get("clock_period_ns", 10))
    rng = random.Random(cfg.get("seed", 0))

    clk = getattr(dut, manifest["clk"])
    rst = getattr(dut, manifest["rst"])
    Clock(clk, period, unit="ns").start()
    cycles = SimCycles(period)
    source = StreamSource(dut, clk, streams["i_stream"], cycles, rng=rng)
    sink = StreamSink(dut, clk, streams["o_stream"], cycles, rng=rng)
    monitors = [StreamMonitor(dut, clk, streams[s], cycles, s) for s in ("i_stream", "o_stream")]
    rst.value = 1
    await ClockCycles(clk, 4)
    rst.value = 0
    await RisingEdge(clk)
    for m in monitors:
        cocotb.start_soon(m.run())
    cocotb.start_soon(sink.run())
    # Per-stage frame probes (generated with probes=True): the cycle of every frame end.
    frame_ends = {p["stage"]: [] for p in manifest["core"].get("probes", [])}

    async def watch(signal, ends):
        while True:
            await RisingEdge(signal)
            ends.append(cycles.now)

    for p in manifest["core"].get("probes", []):
        cocotb.start_soon(watch(getattr(dut, p["port"]), frame_ends[p["stage"]]))

    results = {"top": manifest["top"], "images": n_images, "num_classes": num_classes,
               "clock_period_ns": period, "phases": [], "errors": []}
    errors = results["errors"]
    try:
        for phase in cfg["phases"]:
            source.valid_prob = float(phase["valid_prob"])
            sink.ready_prob = float(phase["ready_prob"])
            in_start, out_start = len(source.accepted), len(sink.received)
            probe_start = {stage: len(ends) for stage, ends in frame_ends.items()}
            want = out_start + n_images * num_classes
            for i, image in enumerate(beats):
                await source.send(image, tags=[i] * len(image))
                dut._log.info("phase %s: image %d sent at cycle %d, %d score beats out",
                              phase["name"], i, cycles.now, len(sink.received) - out_start)
            await _wait_for(lambda: len(sink.received) >= want, period,
                            lambda: (len(source.accepted), len(sink.received)),
                            int(cfg.get("stall_cycles", 100000)),
                            f"waiting for the scores of phase {phase['name']!r}")
            # Let a core that wrongly emits extra beats show them.
            await ClockCycles(clk, 8)
            accepted = source.accepted[in_start:]
            received = sink.received[out_start:]
            if len(received) != n_images * num_classes:
                errors.append(f"phase {phase['name']}: {len(received)} output beats, "
                              f"expected {n_images * num_classes}")
                received = received[:n_images * num_classes]
            scores, last_out, mismatches = [], [], []
            for i in range(n_images):
                image_beats = received[i * num_classes:(i + 1) * num_classes]
                row = []
                for c, (cycle, payload) in enumerate(image_beats):
                    row.append(decode_field(payload, out_fields["score"]))
                    last = decode_field(payload, out_fields["last"])
                    if last != (c == num_classes - 1):
                        errors.append(f"phase {phase['name']}: image {i} class {c}: "
                                      f"last={last}")
                scores.append(row)
                last_out.append(image_beats[-1][0])
                if expected is not None:
                    for c in range(num_classes):
                        if row[c] != int(expected[i, c]):
                            mismatches.append({"image": i, "class": c,
                                               "expected": int(expected[i, c]),
                                               "got": row[c]})
            first_in = [next(cy for cy, tag in accepted if tag == i) for i in range(n_images)]
            last_in = [max(cy for cy, tag in accepted if tag == i) for i in range(n_images)]
            entry = {"name": phase["name"], "valid_prob": source.valid_prob,
                     "ready_prob": sink.ready_prob, "scores": scores,
                     "mismatches": mismatches, "first_in": first_in, "last_in": last_in,
                     "last_out": last_out,
                     "latency": [lo - fi for lo, fi in zip(last_out, first_in)],
                     "intervals": [b - a for a, b in zip(last_out, last_out[1:])],
                     "stage_frame_ends": {stage: ends[probe_start[stage]:]
                                          for stage, ends in frame_ends.items()}}
            results["phases"].append(entry)
            if mismatches:
                m = mismatches[0]
                errors.append(f"phase {phase['name']}: {len(mismatches)} score mismatches, "
                              f"first: image {m['image']} class {m['class']} expected "
                              f"{m['expected']} got {m['got']}")
        for m in monitors:
            errors.extend(msg for _, msg in m.violations[:5])
    except TimeoutError as e:
        errors.append(str(e))
    finally:
        sink.stop()
        results["sim_cycles"] = cycles.now
        results["wall_seconds"] = time.monotonic() - wall_start
        results["passed"] = not errors
        with open(cfg["results"], "w") as f:
            json.dump(results, f, indent=1)
    assert not errors, "; ".join(errors[:5])

"""Calibration of the hardwired layers' adder cost model (:mod:`bnnhw.plan.adder_cost`).

Synthesizes, out of context with YoWASP Yosys, 32 independent copies of each adder the
lowered adder graphs use (:func:`bnnhw.plan.adder_graph.lower`): full adders in LUTs, the
small adders Yosys maps to LUTs, carry chains of 5 to 12 result bits, and (ECP5) a chain with
one inverted operand. Prints, per adder and family, the measured LUTs per copy (ECP5: LUT4
equivalents, a CCU2C counting two; xc7: LUT6) next to the cost model's price, and writes the
"Adder cost model calibration" section of BENCHMARKS.md.

Run (about 2-4 min on one core)::

    nice -n 10 .venv/bin/python benchmarks/adder_calibration.py
"""

import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from amaranth import Cat, Module, Signal  # noqa: E402
from amaranth.lib import wiring  # noqa: E402
from amaranth.lib.wiring import In, Out  # noqa: E402

from bnnhw.flow import build_root  # noqa: E402
from bnnhw.gen import resources  # noqa: E402
from bnnhw.hw.hardwired import full_adder  # noqa: E402
from bnnhw.plan.adder_cost import cost_model  # noqa: E402
from report import markdown_table, update_section  # noqa: E402

warnings.filterwarnings("ignore", message=".*created but never used")

COPIES = 32
COMMAND = "nice -n 10 .venv/bin/python benchmarks/adder_calibration.py"
CACHE = build_root() / "benchmarks" / "adder_calibration"
FAMILIES = {"ecp5": "lut4_equiv", "xc7": "lut"}
KEEP = {"keep": 1}


class AdderCopies(wiring.Component):
    """``copies`` independent adders ``a + b (+ c)`` (``a`` inverted when ``invert``), every
    result a port, so that nothing merges across copies."""

    def __init__(self, *, kind, widths, carry_in=False, invert=False, copies=COPIES):
        self.kind, self.widths, self.carry_in, self.invert = kind, widths, carry_in, invert
        self.copies = copies
        per = 3 if kind == "fa" else sum(widths) + int(carry_in)
        self.result = 2 if kind == "fa" else max(widths) + 1
        super().__init__({"x": In(per * copies), "y": Out(self.result * copies)})

    def elaborate(self, platform):
        m = Module()
        per = len(self.x) // self.copies
        outs = []
        for i in range(self.copies):
            bits = self.x[i * per:(i + 1) * per]
            s = Signal(self.result, name=f"s{i}", attrs=KEEP)
            if self.kind == "fa":
                m.d.comb += s.eq(Cat(*full_adder(bits[0], bits[1], bits[2])))
            else:
                wa, wb = self.widths
                a, b = bits[:wa], bits[wa:wa + wb]
                if self.invert:
                    a = ~a
                total = a + b
                if self.carry_in:
                    total = total + bits[wa + wb]
                m.d.comb += s.eq(total)
            outs.append(s)
        m.d.comb += self.y.eq(Cat(*outs))
        return m


def cases():
    """``(label, kwargs, model price per family)`` of every calibrated adder."""
    out = [("full adder (3 x 1 bit, LUTs)", {"kind": "fa", "widths": (1, 1, 1)},
            {f: cost_model(f).full_adder for f in FAMILIES})]
    small = [((1, 1), False), ((1, 1), True), ((1, 2), False), ((1, 2), True), ((2, 2), False),
             ((2, 2), True), ((1, 3), False), ((1, 3), True), ((2, 3), False), ((2, 3), True),
             ((3, 3), False), ((3, 3), True)]
    for ws, ci in small:
        price = {f: cost_model(f).add(ws, ci, max(ws) + 1) for f in FAMILIES}
        out.append((f"{ws[0]} + {ws[1]} bits{' + carry-in' if ci else ''}",
                    {"kind": "add", "widths": ws, "carry_in": ci}, price))
    for w in range(4, 12):
        price = {f: cost_model(f).add((w, w), False, w + 1) for f in FAMILIES}
        out.append((f"{w} + {w} bits (chain, {w + 1} out)", {"kind": "add", "widths": (w, w)},
                    price))
    for w in (4, 6, 8):
        price = {f: cost_model(f).add((w, w), False, w + 1) + cost_model(f).inverted_bit * w
                 for f in FAMILIES}
        out.append((f"~{w} + {w} bits (one operand inverted)",
                    {"kind": "add", "widths": (w, w), "invert": True}, price))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="ecp5,xc7")
    args = ap.parse_args(argv)
    families = args.families.split(",")
    rows = []
    worst = {f: 0.0 for f in families}
    for label, kwargs, price in cases():
        row = [label]
        for family in families:
            r = resources.synthesize(AdderCopies(**kwargs), family, cache_dir=CACHE)
            per = r["total"][FAMILIES[family]] / COPIES
            err = per - price[family]
            worst[family] = max(worst[family], abs(err))
            row += [f"{per:.2f}", f"{price[family]:.1f}"]
            print(f"{label:45s} {family}: measured {per:.2f}, model {price[family]:.1f}",
                  flush=True)
        rows.append(row)
    header = ["adder"] + [h for f in families for h in (f"{f} measured", f"{f} model")]
    table = markdown_table(header, rows)
    print(table)
    update_section("Adder cost model calibration", f"""
What one adder costs after YoWASP Yosys, out of context: {COPIES} independent copies of each,
every result kept, LUTs per copy (ECP5: LUT4 equivalents, a CCU2C counting two; xc7: LUT6),
next to the price the hardwired layers' cost model (`bnnhw/plan/adder_cost.py`) uses when it
chooses between sharing forms. Largest difference: """ + ", ".join(
        f"{f} {worst[f]:.2f} LUT" for f in families) + f""" per adder.

```sh
{COMMAND}
```

{table}
""")


if __name__ == "__main__":
    main()

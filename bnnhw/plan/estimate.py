"""Fit before place and route: LUTs, flip-flops and memories of a core plan on a device.

:func:`estimate` adds up, per stage of a :class:`~bnnhw.plan.core.CorePlan`, a cost model of
the logic (per family, coefficients below) and the memory map
(:class:`~bnnhw.plan.memory.MemoryMap`: block RAMs, logic ROMs, LUT RAM). :func:`check_fit`
refuses a design whose estimate exceeds the device, naming every resource with its numbers;
the board build calls it before synthesis, and again with the synthesized counts before place
and route. :func:`search_folding` picks the cheapest folding that reaches an image rate and
fits a device (trying faster foldings when the fewest lanes do not fit), or names the fastest
folding it found that fits.

Cost model (LUT4s and FFs; the constants were fitted to Yosys 0.70 synthesis of the MVTUs of
LFC and CNV, see BENCHMARKS.md "Hardware resources"; every board build reports the error of
the estimate against its own synthesis):

* MVTU: ``lane * PE*SIMD*in_bits`` (XNOR + popcount tree, or the multi-bit dot product)
  ``+ acc * PE*A`` (accumulators, threshold compare, result registers) ``+ fixed``;
* sliding window: ``window * SIMD*bits + fixed`` (chunk selection, counters);
* width converters / serializers / FIFOs / pool: proportional to their stream widths;
* the UART wrapper: a constant.
"""

import math

from ..errors import ModelError
from .devices import Device
from .memory import MemoryMap

__all__ = ["estimate", "check_fit", "FitError", "search_folding", "COEFFICIENTS"]

#: Per family: LUT4s and FFs per unit of each term (see the module docstring).
COEFFICIENTS = {
    # Fitted once against a whole-network synthesis of CNV (auto folding for 9,150 images/s
    # at 100 MHz: 40,430 LUT4 eq., 18,079 FF) and the per-layer figures of LFC.
    "ecp5": {"lut_lane": 1.8, "lut_acc": 6.0, "lut_mvtu": 60, "ff_lane": 0.5, "ff_acc": 2.5,
             "ff_mvtu": 60, "lut_window": 3.0, "lut_stage": 60, "lut_width": 1.5,
             "ff_width": 1.0, "wrapper_lut": 250, "wrapper_ff": 200},
    "ice40": {"lut_lane": 2.4, "lut_acc": 4.3, "lut_mvtu": 60, "ff_lane": 0.5, "ff_acc": 2.5,
              "ff_mvtu": 60, "lut_window": 3.0, "lut_stage": 50, "lut_width": 1.5,
              "ff_width": 1.0, "wrapper_lut": 200, "wrapper_ff": 200},
}
COEFFICIENTS["gowin"] = dict(COEFFICIENTS["ice40"])


class FitError(ModelError):
    """A design does not fit its device (the message names every resource over)."""


def _stage_cost(stage, c):
    from .stages import (FifoPlan, InputPlan, MVTUPlan, PoolPlan, ScoresPlan, TransposePlan,
                         WidthPlan, WindowPlan)
    p = stage.plan
    if isinstance(p, MVTUPlan):
        lanes = p.pe * p.simd * p.in_bits
        acc = p.pe * p.acc_width
        out = p.out_width if p.nf > 1 else 0
        return (c["lut_lane"] * lanes + c["lut_acc"] * acc + c["lut_mvtu"],
                c["ff_lane"] * lanes + c["ff_acc"] * acc + out + c["ff_mvtu"])
    if isinstance(p, WindowPlan):
        w = p.simd * p.bits
        return c["lut_window"] * w + c["lut_stage"], 2 * w + c["lut_stage"]
    if isinstance(p, TransposePlan):
        return c["lut_width"] * 2 * p.fan_in * p.bits, 2 * p.fan_in * p.bits
    if isinstance(p, (WidthPlan, FifoPlan)):
        width = getattr(p, "in_width", None) or getattr(p, "width", 0)
        width += getattr(p, "out_width", 0) or 0
        return c["lut_width"] * width + c["lut_stage"], c["ff_width"] * width + 20
    if isinstance(p, PoolPlan):
        return c["lut_width"] * 2 * p.channels + c["lut_stage"], 2 * p.channels + 20
    if isinstance(p, ScoresPlan):
        w = p.classes * p.score_width
        return c["lut_width"] * w + c["lut_stage"], w + 20
    if isinstance(p, InputPlan):
        return 20 * p.lanes + c["lut_stage"], 8 * p.lanes * 2
    return c["lut_stage"], 20


def estimate(plan, device, *, memory_map=None, wrapper=True):
    """Estimated resources of ``plan`` on ``device``.

    Returns
    -------
    dict
        ``{"device", "family", "lut", "ff", "bram", "dsp", "per_stage": {stage: {lut, ff}},
        "memory": MemoryMap.describe()}``; LUTs and FFs include the memory map's logic ROMs
        and LUT RAM.
    """
    if not isinstance(device, Device):
        raise TypeError(f"Device must be a Device, not {device!r}")
    c = COEFFICIENTS[device.family]
    mm = memory_map if memory_map is not None else MemoryMap(plan, device)
    per_stage = {}
    lut = ff = 0.0
    for s in plan.stages:
        sl, sf = _stage_cost(s, c)
        per_stage[s.name] = {"lut": round(sl), "ff": round(sf)}
        lut += sl
        ff += sf
    mem = mm.totals()
    lut += mem["luts"]
    ff += mem["ffs"]
    if wrapper:
        lut += c["wrapper_lut"]
        ff += c["wrapper_ff"]
    return {"device": device.name, "family": device.family, "lut": int(round(lut)),
            "ff": int(round(ff)), "bram": mem["brams"], "dsp": 0, "per_stage": per_stage,
            "memory": mm.describe()}


#: Share of a device's LUTs that place and route is asked to fill at most.
LUT_LIMIT = 1.0


def over(est, device):
    """``[(resource, needed, available)]`` that ``est`` exceeds on ``device``."""
    avail = device.available()
    out = []
    for key in ("lut", "ff", "bram", "dsp"):
        need = est.get(key, 0) or 0
        limit = avail[key] * (LUT_LIMIT if key == "lut" else 1.0)
        if need > limit:
            out.append((key, need, avail[key]))
    return out


def check_fit(est, device, *, what="estimate"):
    """Raise :class:`FitError` when ``est`` (``lut``, ``ff``, ``bram``, ``dsp``) exceeds
    ``device``; the message lists needed against available for every resource over."""
    bad = over(est, device)
    if bad:
        parts = ", ".join(f"{k.upper()} {n:,} needed, {a:,} available" for k, n, a in bad)
        raise FitError(f"design does not fit the {device.name} ({what}): {parts}")


def _plan_and_estimate(net, folding, device):
    from .core import CorePlan
    plan, mm = CorePlan.for_device(net, folding, device)
    return plan, estimate(plan, device, memory_map=mm)


def _ladder(lo, hi):
    """Cycle budgets in ``[lo, hi]`` worth trying: powers of two and 1.5 x powers of two
    (block RAM depths, where a memory's cost steps) and a ladder 2^(1/4) apart."""
    out = set()
    b = 1
    while b <= hi:
        out.update(x for x in (b, 3 * b // 2) if lo <= x <= hi)
        b *= 2
    x = float(hi)
    while x >= lo:
        out.add(int(x))
        x /= 2 ** 0.25
    return sorted(out)


def _share(est, device):
    """The largest share of any resource of ``device`` that ``est`` uses (the binding one)."""
    avail = device.available()
    return max((est.get(k, 0) or 0) / avail[k] for k in ("lut", "ff", "bram", "dsp")
               if avail[k])


def _lane_luts(plan, device):
    """A lower bound of the plan's LUTs: its MVTUs' XNOR/popcount lanes alone (they only grow
    as the cycle budget shrinks)."""
    from .stages import MVTUPlan
    c = COEFFICIENTS[device.family]
    return c["lut_lane"] * sum(s.plan.pe * s.plan.simd * s.plan.in_bits for s in plan.stages
                               if isinstance(s.plan, MVTUPlan))


def search_folding(net, device, *, images_per_second, clock_hz):
    """The cheapest folding that reaches ``images_per_second`` at ``clock_hz`` and fits.

    :func:`bnnhw.plan.folding.auto_folding` gives, per layer, the fewest lanes that meet the
    rate; its memories are mapped onto ``device`` and the whole is estimated. When that does not
    fit, faster foldings are tried too (the foldings for cycle budgets below the rate's: block
    RAM depths and a ladder 2^(1/4) apart), because fewer lanes are not always cheaper: a
    budget just over a block RAM depth (564 cycles against 512) doubles the block RAMs of every
    weight memory, and memories that then no longer fit move into logic. Of those that fit and
    reach the rate, the one using the smallest share of its binding resource is returned. When
    none does, the folding for the smallest budget that fits is found (ladder upwards, then
    bisection between the last budget that did not fit and the first that did) and its rate
    named in the :class:`FitError`.

    Returns
    -------
    (folding, plan, estimate)
    """
    from .folding import auto_folding

    seen = {}

    def attempt(budget):
        """(fold, plan, est, fits) for the folding of ``budget`` cycles per image, or None."""
        try:
            # +0.5: auto_folding floors clock/rate, which must give ``budget`` exactly.
            fold = auto_folding(net, images_per_second=clock_hz / (budget + 0.5),
                                clock_hz=clock_hz)
            key = tuple(sorted((k, v["PE"], v["SIMD"]) for k, v in fold.items()))
            if key not in seen:
                plan, est = _plan_and_estimate(net, fold, device)
                seen[key] = (fold, plan, est, not over(est, device))
        except ModelError:
            # Out of reach, or past the generator's size limits (bnnhw.limits): too large.
            return None
        return seen[key]

    target = math.floor(clock_hz / images_per_second)
    got = attempt(target) if target >= 1 else None
    if got is not None and got[3]:
        return got[:3]
    if got is not None:
        fitting = []
        for budget in reversed(_ladder(1, target - 1)):
            r = attempt(budget)
            if r is None or _lane_luts(r[1], device) > device.luts:
                break          # out of reach, or too many lanes, from here down
            if r[3]:
                fitting.append(r)
        if fitting:
            best = min(fitting, key=lambda r: (_share(r[2], device), r[2]["lut"]))
            return best[:3]
    # Nothing reaches the rate and fits: the smallest budget above it that fits. The fewest
    # lanes of all (an unbounded budget) bound the search: when they do not fit, nothing does.
    best = None
    slowest = attempt(10 ** 12)
    if slowest is not None and slowest[3]:
        cap = slowest[1].cycles_per_image
        last_bad = budget = max(target, 1)
        while best is None:
            budget = min(cap, max(budget + 1, int(budget * 2 ** 0.25)))
            r = attempt(budget)
            if r is not None and r[3]:
                best = (budget, r)
            else:
                last_bad = budget
        lo, hi = last_bad, best[0]
        while hi - lo > 1:
            mid = (lo + hi) // 2
            r = attempt(mid)
            if r is not None and r[3]:
                hi, best = mid, (mid, r)
            else:
                lo = mid
    why = "is out of reach of any folding" if got is None else \
        "does not fit: " + ", ".join(f"{k.upper()} {n:,} needed, {a:,} available"
                                     for k, n, a in over(got[2], device)) + \
        ", nor does any faster folding"
    if best is None:
        raise FitError(f"{images_per_second:,.0f} images/s at {clock_hz / 1e6:g} MHz {why}; "
                       f"no folding of {net.name!r} fits the {device.name}")
    reach = best[1][1].cycles_per_image
    raise FitError(f"{images_per_second:,.0f} images/s at {clock_hz / 1e6:g} MHz {why}; the "
                   f"fastest folding found that fits the {device.name} reaches "
                   f"{math.floor(clock_hz / reach):,} images/s ({reach:,} cycles per image)")

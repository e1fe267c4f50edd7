"""Reports of result sharing: the per-layer table and plot of ``bnnhw share``.

:func:`share_report` computes the plans of the requested modes and their counts;
:func:`format_table` prints them; :func:`plot_reductions` draws them with matplotlib
(imported only when a plot is asked for).
"""

from .counts import plan_counts
from .planner import make_plan

__all__ = ["report_modes", "share_report", "format_table", "plot_reductions"]


def report_modes(max_distance, approximate):
    """The modes a report compares: ``exact``, ``similar:D`` (``D >= 1``), ``approx:D``."""
    modes = ["exact"]
    if max_distance >= 1:
        modes.append(f"similar:{max_distance}")
        if approximate:
            modes.append(f"approx:{max_distance}")
    return modes


def share_report(net, max_distance=1, approximate=False, *, intermediates=True):
    """Plans and operation counts of ``net`` for the modes of :func:`report_modes`.

    Returns
    -------
    dict
        ``"model"``, ``"fingerprint"``, ``"max_distance"``, ``"approximate"``, ``"modes"``
        (per mode ``{"layers": [counts], "total": counts}``, counts as
        :meth:`LayerCounts.to_dict`), ``"plan_mode"`` and ``"plan"`` (the last mode's plan,
        :meth:`SharingPlan.to_dict`); and, not JSON, ``"_plans"``: ``{mode: SharingPlan}``.
    """
    plans, modes = {}, {}
    for mode in report_modes(max_distance, approximate):
        plan = make_plan(net, mode, intermediates=intermediates)
        rows, total = plan_counts(plan)
        plans[mode] = plan
        modes[mode] = {"layers": [r.to_dict() for r in rows], "total": total.to_dict()}
    last = list(plans)[-1]
    return {"model": net.name, "fingerprint": net.fingerprint(),
            "max_distance": max_distance, "approximate": bool(approximate),
            "intermediates": bool(intermediates), "modes": modes, "plan_mode": last,
            "plan": plans[last].to_dict(), "_plans": plans}


def _ops(v):
    return f"{v:,.1f}" if v != int(v) else f"{int(v):,}"


def format_table(report):
    """The text table of a :func:`share_report`: one row per layer and a total."""
    modes = list(report["modes"])
    main = modes[1] if len(modes) > 1 else modes[0]
    header = ["layer", "unshared"]
    for mode in modes:
        header += [mode, "saved"]
    header += [f"corr. bits ({main})", f"inversions ({main})"]
    table = [header]
    names = [r["name"] for r in report["modes"]["exact"]["layers"]] + ["total"]
    for i, name in enumerate(names):
        rows = {m: (report["modes"][m]["layers"][i] if name != "total"
                    else report["modes"][m]["total"]) for m in modes}
        line = [name, f"{rows['exact']['unshared']:,}"]
        for mode in modes:
            line += [_ops(rows[mode]["shared"]), f"{100 * rows[mode]['reduction']:.1f} %"]
        line += [f"{rows[main]['correction_bits']:,}", f"{rows[main]['inversions']:,}"]
        table.append(line)
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    out = [f"model {report['model']} (id {report['fingerprint']}): 2-D ops per image "
           f"(one kh x kw XNOR-popcount at one output pixel; a d-bit correction counts d/(kh*kw))"]
    for k, row in enumerate(table):
        out.append("  ".join(c.ljust(w) if j == 0 else c.rjust(w)
                             for j, (c, w) in enumerate(zip(row, widths))).rstrip())
        if k == len(table) - 2:
            out.append("  ".join("-" * w for w in widths))
    for mode in modes:
        t = report["modes"][mode]["total"]
        out.append(f"{mode}: {t['computed']:,} 2-D popcounts from scratch + "
                   f"{t['correction_bits']:,} correction bits, {t['inversions']:,} inversions "
                   f"(n - p), {t['entries']:,} entries ({t['intermediates']:,} intermediate), "
                   f"longest chain {t['max_depth']}")
    return "\n".join(out)


def plot_reductions(report, path):
    """Draw the per-layer 2-D ops of every mode (bars, log scale) and the fraction saved.

    Written atomically to ``path`` (PNG). Needs matplotlib.
    """
    import numpy as np
    from matplotlib.figure import Figure      # no pyplot: no global backend state

    from ..model.io import atomic_write

    modes = list(report["modes"])
    names = [r["name"] for r in report["modes"]["exact"]["layers"]] + ["total"]

    def rows(mode):
        return report["modes"][mode]["layers"] + [report["modes"][mode]["total"]]
    unshared = np.array([r["unshared"] for r in rows("exact")], float)
    colours = {"unshared": "#9e9e9e", "exact": "#4c72b0", "similar": "#55a868",
               "approx": "#dd8452"}
    fig = Figure(figsize=(12, 4.6))
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    x = np.arange(len(names))
    width = 0.8 / (len(modes) + 1)
    series = [("unshared", unshared)] + [(m, np.array([r["shared"] for r in rows(m)]))
                                          for m in modes]
    for k, (label, values) in enumerate(series):
        colour = colours[label.split(":")[0]]
        if label.startswith("approx"):
            label += " (changes results)"
        ax1.bar(x + (k - len(modes) / 2) * width, values, width, label=label, color=colour)
    ax1.set_yscale("log")
    ax1.set_xticks(x, names)
    ax1.set_ylabel("2-D ops per image (log scale)")
    ax1.set_title("2-D operations per layer")
    ax1.legend(fontsize=8, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.08),
               ncol=len(series))
    ax1.grid(axis="y", which="both", alpha=0.25)
    width2 = 0.8 / len(modes)
    for k, mode in enumerate(modes):
        saved = np.array([100 * r["reduction"] for r in rows(mode)])
        bars = ax2.bar(x + (k - (len(modes) - 1) / 2) * width2, saved, width2, label=mode,
                       color=colours[mode.split(":")[0]])
        for b, v in zip(bars, saved):
            ax2.text(b.get_x() + b.get_width() / 2, v + 1, f"{v:.0f}", ha="center",
                     va="bottom", fontsize=7)
    ax2.set_xticks(x, names)
    ax2.set_ylim(0, 118)
    ax2.set_yticks(range(0, 101, 20))
    ax2.set_ylabel("2-D ops saved (%)")
    ax2.set_title("saved against unshared (corrections counted)")
    ax2.grid(axis="y", alpha=0.25)
    ax2.legend(fontsize=8, frameon=False, loc="upper left", ncol=len(modes))
    fig.suptitle(f"Result sharing, {report['model']}: 2-D kernels per input channel "
                 f"(SPEC §9)", fontsize=11)
    fig.tight_layout()

    def write(tmp):
        fig.savefig(tmp, format="png", dpi=110)
    atomic_write(path, write)

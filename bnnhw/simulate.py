"""``bnnhw simulate``: run raw inputs through the generated Verilog in a cocotb simulation.

A step list over the build flow (:mod:`bnnhw.flow`): ``generate`` (skipped when the core in
the build folder is current for this model, folding, bnnhw's sources and tool versions), then
``simulate`` on the given images. The scores come from the simulated hardware's output
stream, and are the same as :func:`bnnhw.golden.forward` bit for bit when the hardware is right
(the tests check that).
"""

import numpy as np

from . import golden
from .errors import InputError

__all__ = ["simulate", "hardware_build"]


def hardware_build(net, folding=None, *, build_dir=None, root=None, simulator="verilator",
                   probes=False):
    """The :class:`~bnnhw.flow.Build` of ``net``'s core at ``folding``.

    ``build_dir`` replaces the folder under the build root (``root``, see
    :func:`bnnhw.flow.build_root`).
    """
    from .flow import Build
    return Build.of(net, folding, root=root, folder=build_dir, simulator=simulator,
                    probes=probes)


def simulate(net, x, *, simulator="icarus", folding=None, build_dir=None, stress=False,
             seed=0, verilator_opt="balanced", root=None):
    """Scores of the generated hardware for raw inputs ``x``, by cocotb simulation.

    Parameters
    ----------
    net : bnnhw.model.Network
    x : numpy.ndarray of uint8
        Raw inputs, as :func:`bnnhw.golden.forward` takes them.
    simulator : {"icarus", "verilator"}
    folding : dict, optional
        ``{layer: {"PE", "SIMD"}}`` or a JSON file; default as
        :func:`bnnhw.plan.folding.load_folding`.
    build_dir : path-like, optional
        Build folder (default: under the build root, named by the configuration).
    stress : bool
        Also stream the images a second time with random valid gaps and backpressure, and
        check that the scores do not change.
    seed : int
        Seed of the stress phase.
    verilator_opt : {"balanced", "fast-build", "default"}
        C++ optimisation of a Verilator build
        (:data:`bnnhw.gen.cocotb_run.VERILATOR_OPT`); part of the step's key.
    root : path-like, optional
        The build root.

    Returns
    -------
    scores : numpy.ndarray of int64, ``[N, classes]``
    stats : dict
        ``cycles_per_image`` (interval between the last output beats of the last two images,
        streamed back to back; ``None`` for one image), ``latency_cycles`` (first input beat to
        last output beat of the first image), the manifest's estimates, ``sim_cycles``,
        ``sim_seconds``, ``build_seconds`` (0 when the simulator build was reused), the
        simulator and ``generated`` (the core's folder).

    Raises
    ------
    InputError
        Bad input bytes or folding.
    ToolError
        Missing simulator, failed build, or a simulation that stalls or breaks the stream
        protocol.
    """
    from .flow.steps import simulation_results
    from .gen.cocotb_run import SIMULATORS
    if simulator not in SIMULATORS:
        raise InputError(f"simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    raw = np.ascontiguousarray(golden.check_input(net, x))
    build = hardware_build(net, folding, build_dir=build_dir, root=root, simulator=simulator)
    record = build.run("simulate", simulator=simulator, inputs=raw, stress=stress, seed=seed,
                       verilator_opt=verilator_opt)
    scores, stats = simulation_results(build, record)
    if record["skipped"]:
        stats = dict(stats, build_seconds=0.0, reused=True)
    return scores.astype(np.int64), stats

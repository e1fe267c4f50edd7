"""Hardware commands: ``generate`` (Verilog core) and ``simulate`` (cocotb)."""

from pathlib import Path

import numpy as np

from ..errors import InputError
from ._common import check_output_file, load_input, load_net, positive_number, preview, \
    save_scores

__all__ = ["register"]


def share_mode(text):
    """``--share MODE``: checked by :func:`bnnhw.sharing.parse_mode`."""
    import argparse
    from ..sharing import parse_mode
    try:
        parse_mode(text)
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def cmd_generate(args):
    from ..gen import generate
    from ..outputs import check_output_folder
    if args.folding is not None and args.target_fps is not None:
        raise InputError("give either --folding or --target-fps, not both")
    check_output_folder(args.output, "generate")
    net = load_net(args.model)
    manifest = generate(net, args.output, folding=args.folding, target_fps=args.target_fps,
                        clock_mhz=args.clock_mhz, probes=args.probes, share=args.share)
    core = manifest["core"]
    print(f"{net.name} (id {net.fingerprint()}): {Path(args.output) / manifest['verilog']}, "
          f"manifest.json, vectors.npz; {core['cycles_per_image']} cycles/image "
          f"({manifest['images_per_second_estimate']:,.0f} images/s at "
          f"{args.clock_mhz:g} MHz, bottleneck {core['bottleneck']})")


def cmd_simulate(args):
    from ..simulate import simulate
    check_output_file(args.output)
    net = load_net(args.model)
    x = load_input(args.input)
    scores, stats = simulate(net, x, simulator=args.sim, folding=args.folding,
                             build_dir=args.build_dir, stress=args.stress,
                             verilator_opt=args.verilator_opt)
    save_scores(args.output, scores)
    cpi = stats["cycles_per_image"]
    print(f"{scores.shape[0]} images -> {args.output} ({args.sim}: "
          f"{cpi if cpi is not None else '-'} cycles/image, latency "
          f"{stats['latency_cycles']} cycles; predicted: "
          f"{preview(np.argmax(scores, axis=1))})")


def register(sub):
    """Add ``generate`` and ``simulate`` to the ``bnnhw`` subparsers."""
    p = sub.add_parser("generate", help="Verilog core + manifest.json + golden vectors.npz",
                       description="bnnhw generate MODEL -o DIR: write the network core as one "
                                   "Verilog file, its manifest and golden test vectors")
    p.add_argument("model")
    p.add_argument("-o", "--output", required=True,
                   help="output folder: created, or replaced atomically when it is empty or a "
                        "previous `bnnhw generate` output (never a folder holding other files)")
    p.add_argument("--folding", metavar="FILE", default=None,
                   help="JSON {layer: {PE, SIMD}} (default: the model's, e.g. FINN's)")
    p.add_argument("--target-fps", type=positive_number, default=None, metavar="N",
                   help="choose the cheapest folding reaching N images/s")
    p.add_argument("--clock-mhz", type=positive_number, default=100.0,
                   help="clock for --target-fps and the estimates (default 100)")
    p.add_argument("--probes", action="store_true",
                   help="add a frame-end probe port per stage (the testbench then times "
                        "every stage)")
    p.add_argument("--share", metavar="MODE", default=None, type=share_mode,
                   help="result sharing of the folding's \"datapath\": \"hardwired\" layers: "
                        "exact, similar:D or approx:D (SPEC 9; approx changes the network)")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("simulate", help="scores from the generated Verilog (cocotb simulation)")
    p.add_argument("model")
    p.add_argument("input", help=".npy of uint8 raw inputs, as for run")
    p.add_argument("-o", "--output", required=True, help="scores .npy (int64 [N, classes])")
    p.add_argument("--sim", default="icarus", choices=("icarus", "verilator"))
    p.add_argument("--folding", metavar="FILE", default=None)
    p.add_argument("--build-dir", default=None,
                   help="build folder (default: <build root>/<model>-<id>-<config hash>)")
    p.add_argument("--stress", action="store_true",
                   help="stream the inputs again with random valid gaps and backpressure and "
                        "check that the scores do not change")
    p.add_argument("--verilator-opt", default="balanced",
                   choices=("balanced", "fast-build", "default"),
                   help="C++ optimisation of the Verilator build (fast-build: quicker build, "
                        "~3x slower simulation)")
    p.set_defaults(func=cmd_simulate)

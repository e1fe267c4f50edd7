"""The ``bnnhw`` command line: a thin front end that parses, calls the library and prints.

Every command exits non-zero with a one-line ``bnnhw: error: ...`` on bad input and leaves no
partial output file behind (outputs are written to a temporary file and renamed).
"""

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np

from .errors import BnnhwError, InputError

__all__ = ["main"]


# -- helpers shared by the commands ---------------------------------------------------------------

def _load_model(path):
    from .model import load_model
    return load_model(path)


def load_input(path):
    """Read an input ``.npy`` file (uint8 raw bytes) with one-line errors."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"input file {str(path)!r} does not exist")
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"input file {str(path)!r} is not a readable .npy array ({e})") from None
    if not isinstance(x, np.ndarray):
        raise InputError(f"input file {str(path)!r} must hold one array, not an archive")
    return x


def save_scores(path, scores):
    """Write scores to ``path`` (.npy) atomically."""
    from .model.io import atomic_write

    def write(tmp):
        with open(tmp, "wb") as f:
            np.save(f, scores)
    atomic_write(path, write)


def read_idx(path):
    """Read an IDX file (optionally gzipped): big-endian header, then the data."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"IDX file {str(path)!r} does not exist")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise InputError(f"IDX file {str(path)!r} is unreadable ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise InputError(f"IDX file {str(path)!r} is not an unsigned-byte IDX file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    if len(raw) != header + int(np.prod(dims)):
        raise InputError(f"IDX file {str(path)!r} is truncated: header says {dims}, "
                         f"{len(raw) - header} data bytes present")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def load_mnist(directory, split="t10k"):
    """MNIST images ``[N, 28, 28]`` and labels ``[N]`` from an IDX folder."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"MNIST folder {str(directory)!r} does not exist")

    def find(kind):
        for name in (f"{split}-{kind}-idx{3 if kind == 'images' else 1}-ubyte.gz",
                     f"{split}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"):
            if (directory / name).exists():
                return directory / name
        raise InputError(f"MNIST folder {str(directory)!r} has no {split}-{kind} IDX file")
    images, labels = read_idx(find("images")), read_idx(find("labels"))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise InputError(f"MNIST folder {str(directory)!r}: images {list(images.shape)} and "
                         f"labels {list(labels.shape)} do not match")
    return images, labels


# -- commands ----------------------------------------------------------------------------------

def cmd_info(args):
    net = _load_model(args.model)
    if args.json:
        print(json.dumps(model_summary(net), indent=2))
        return
    rows = model_summary(net)
    print(f"model {net.name}  id {net.fingerprint()}  input {list(net.input_shape)} uint8, "
          f"quantizer {net.quantizer.kind} {net.quantizer.params()}, "
          f"{net.num_classes} classes, scores: {net.output_rule}")
    header = ("layer", "kind", "input", "output", "K", "A_min", "acc", "ops", "weight bits")
    table = [header] + [(r["name"], r["kind"], "x".join(map(str, r["input_shape"])),
                         "x".join(map(str, r["output_shape"])), _dash(r["K"]),
                         _dash(r["min_acc_bits"]), _dash(r["acc_bits"]), _dash(r["operations"]),
                         _dash(r["weight_bits"])) for r in rows["layers"]]
    table.append(("total", "", "", "", "", "", "", str(rows["total_operations"]),
                  str(rows["total_weight_bits"])))
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(str(c).ljust(w) if i < 4 else str(c).rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths))).rstrip())


def _dash(v):
    return "-" if v in (None, 0) else str(v)


def model_summary(net):
    """Per layer: kind, shapes, K, minimal and used accumulator widths, operations, weight bits."""
    layers = []
    for info in net.infos:
        layer = info.layer
        layers.append({
            "name": info.name, "kind": info.kind,
            "input_shape": list(info.input_shape), "output_shape": list(info.output_shape),
            "K": info.fan_in,
            "min_acc_bits": getattr(layer, "min_acc_bits", None),
            "acc_bits": getattr(layer, "accumulator_bits", getattr(layer, "signed_bits", None)),
            "operations": info.operations, "weight_bits": info.weight_bits,
        })
    return {"name": net.name, "id": net.fingerprint(), "input_shape": list(net.input_shape),
            "classes": list(net.classes), "output_rule": net.output_rule, "layers": layers,
            "total_operations": net.total_operations,
            "total_weight_bits": net.total_weight_bits}


def cmd_run(args):
    from . import golden
    net = _load_model(args.model)
    x = load_input(args.input)
    scores = golden.forward(net, x)
    save_scores(args.output, scores)
    print(f"{scores.shape[0]} images -> {args.output} (predicted: "
          f"{_preview(np.argmax(scores, axis=1))})")


def _preview(values, n=10):
    values = list(map(int, values))
    return " ".join(map(str, values[:n])) + (" ..." if len(values) > n else "")


def load_labels(path):
    """Read a labels ``.npy`` file.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.npy`` holding one integer class index per input, ``[N]``.

    Returns
    -------
    numpy.ndarray of int64, ``[N]``

    Raises
    ------
    bnnhw.errors.InputError
        Missing or unreadable file, not a vector, not integers; the message names the file.
    """
    labels = load_input(path)
    where = f"labels file {str(path)!r}"
    if labels.ndim != 1:
        raise InputError(f"{where} must hold a vector [N], not shape {list(labels.shape)}")
    if labels.dtype.kind not in "iu":
        raise InputError(f"{where} must hold integer class indices, not {labels.dtype}")
    return labels.astype(np.int64)


def check_labels(net, labels, n, source):
    """Refuse labels that do not fit ``net`` or the ``n`` inputs they go with.

    Parameters
    ----------
    net : bnnhw.model.Network
    labels : numpy.ndarray of int, ``[N]``
    n : int
        Number of inputs the labels go with.
    source : str
        Where the labels come from, for the message (e.g. ``"labels file 'y.npy'"``).

    Raises
    ------
    bnnhw.errors.InputError
        A count mismatch, or the first label outside ``0 .. net.num_classes - 1`` (value and
        index).
    """
    if labels.shape[0] != n:
        raise InputError(f"{source}: {n} inputs but {labels.shape[0]} labels")
    bad = (labels < 0) | (labels >= net.num_classes)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"{source}: label {int(labels[i])} at index {i} is not a class of "
                         f"model {net.name!r} (0..{net.num_classes - 1})")


def _digits_report(net, model_path):
    """The training report recorded for ``net`` (next to the model, or the packaged example's),
    when its fingerprint matches, else ``None``."""
    from .examples import EXAMPLE_REPORT
    fingerprint = net.fingerprint()
    for candidate in (Path(model_path).with_suffix(".json"), EXAMPLE_REPORT):
        try:
            report = json.loads(candidate.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(report, dict) and report.get("fingerprint") == fingerprint:
            return candidate, report
    return None, None


def _eval_data(args, net):
    """``(images, labels, source, report)`` of the data set that ``eval`` was asked for."""
    if args.mnist is not None:
        images, labels = load_mnist(args.mnist)
        return images, labels.astype(np.int64), f"MNIST folder {str(args.mnist)!r}", None
    if args.digits:
        from .examples import digits_split
        if tuple(net.input_shape) != (1, 8, 8):
            raise InputError(f"--digits needs a model of 8x8 grey images (input [1, 8, 8]); "
                             f"model {net.name!r} takes {list(net.input_shape)}")
        path, report = _digits_report(net, args.model)
        split = (report or {}).get("split", {})
        _, _, images, labels = digits_split(split.get("seed", 0),
                                            split.get("test_fraction", 0.25))
        return images, labels, "scikit-learn digits held-out split", (path, report)
    if args.labels is None:
        raise InputError("--inputs needs --labels Y.npy (integer class per input)")
    images = load_input(args.inputs)
    labels = load_labels(args.labels)
    return images, labels, f"labels file {str(args.labels)!r}", None


def cmd_eval(args):
    from . import golden
    if args.labels is not None and args.inputs is None:
        raise InputError("--labels goes with --inputs X.npy")
    if args.limit < 0:
        raise InputError(f"--limit must be a number of images >= 0 (0: all), not {args.limit}")
    net = _load_model(args.model)
    images, labels, source, recorded = _eval_data(args, net)
    images = golden.check_input(net, images)
    check_labels(net, labels, images.shape[0], source)
    if args.limit:
        images, labels = images[:args.limit], labels[:args.limit]
    start = time.perf_counter()
    pred = golden.predict(net, images)
    seconds = time.perf_counter() - start
    correct = int((pred == labels).sum())
    accuracy = correct / len(labels)
    print(f"{net.name}: {correct}/{len(labels)} correct = {100 * accuracy:.2f} % "
          f"({len(labels) / seconds:,.0f} images/s, golden model)")
    if recorded is not None:
        path, report = recorded
        if report is None:
            print("  no training report with this model's fingerprint: nothing to compare")
            return
        expected = report["accuracy"]["golden_test"]
        if args.limit and args.limit < report["split"]["test_images"]:
            print(f"  --limit {args.limit}: not compared with the recorded accuracy ({path})")
        elif correct != report["test_correct"] or abs(accuracy - expected) > 1e-12:
            raise BnnhwError(f"held-out accuracy {100 * accuracy:.2f} % ({correct} correct) "
                             f"differs from {100 * expected:.2f} % "
                             f"({report['test_correct']} correct) recorded in {path}")
        else:
            print(f"  matches the {100 * expected:.2f} % recorded in {path}")


def cmd_convert(args):
    from .model import save_model
    net = _load_model(args.model)
    save_model(net, args.output)
    print(f"{args.model} -> {args.output} (bnnhw model format, id {net.fingerprint()})")


def cmd_demo(args):
    from .demo import run_demo
    run_demo(args)


def cmd_train_example(args):
    from .examples import train_digits
    net, report = train_digits(seed=args.seed, epochs=args.epochs, out=args.output)
    acc = report["accuracy"]
    print(f"{net.name} (id {net.fingerprint()}): held-out accuracy "
          f"{100 * acc['golden_test']:.2f} % golden ({report['test_correct']}/"
          f"{report['split']['test_images']}), {100 * acc['float_test']:.2f} % float twin; "
          f"trained in {report['train_seconds']:.1f} s -> {args.output} "
          f"(+ {Path(args.output).with_suffix('.json')})")


def cmd_firmware(args):
    from .gen import firmware as fw
    words = args.args
    if words[0] == "run":
        if len(words) != 3:
            raise InputError("usage: bnnhw firmware run MODEL INPUT.npy -o SCORES.npy "
                             "[--target host|aarch64|armv7]")
        net = _load_model(words[1])
        x = load_input(words[2])
        scores = fw.run(net, x, target=args.target, impl=args.impl)
        save_scores(args.output, scores)
        print(f"{scores.shape[0]} images -> {args.output} (firmware, {args.target}, "
              f"predicted: {_preview(np.argmax(scores, axis=1))})")
        return
    if len(words) != 1:
        raise InputError("usage: bnnhw firmware MODEL -o DIR [--target host|aarch64|armv7] "
                         "(or: bnnhw firmware run MODEL INPUT.npy -o SCORES.npy)")
    net = _load_model(words[0])
    runner = fw.generate(net, args.output, target=args.target, impl=args.impl)
    print(f"{net.name} (id {net.fingerprint()}): {Path(args.output) / 'generated'} and runner "
          f"{runner} ({args.target}, {args.impl})")


def cmd_generate(args):
    from .gen import generate
    net = _load_model(args.model)
    if args.folding is not None and args.target_fps is not None:
        raise InputError("give either --folding or --target-fps, not both")
    manifest = generate(net, args.output, folding=args.folding, target_fps=args.target_fps,
                        clock_mhz=args.clock_mhz, probes=args.probes)
    core = manifest["core"]
    print(f"{net.name} (id {net.fingerprint()}): {Path(args.output) / manifest['verilog']}, "
          f"manifest.json, vectors.npz; {core['cycles_per_image']} cycles/image "
          f"({manifest['images_per_second_estimate']:,.0f} images/s at "
          f"{args.clock_mhz:g} MHz, bottleneck {core['bottleneck']})")


def cmd_simulate(args):
    from .simulate import simulate
    net = _load_model(args.model)
    x = load_input(args.input)
    scores, stats = simulate(net, x, simulator=args.sim, folding=args.folding,
                             build_dir=args.build_dir, stress=args.stress,
                             verilator_opt=args.verilator_opt)
    save_scores(args.output, scores)
    cpi = stats["cycles_per_image"]
    print(f"{scores.shape[0]} images -> {args.output} ({args.sim}: "
          f"{cpi if cpi is not None else '-'} cycles/image, latency "
          f"{stats['latency_cycles']} cycles; predicted: "
          f"{_preview(np.argmax(scores, axis=1))})")


# -- parser ------------------------------------------------------------------------------------

def build_parser():
    parser = argparse.ArgumentParser(
        prog="bnnhw",
        description="Hardware and firmware for binarized neural networks, verified bit for bit "
                    "against a NumPy golden model.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="per-layer shapes, K, accumulator widths, operations")
    p.add_argument("model", help="model file (bnnhw format or BNN-PYNQ .npz)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("run", help="golden model: scores of raw uint8 inputs")
    p.add_argument("model")
    p.add_argument("input", help=".npy of uint8, [N, C, H, W] (LFC also [N, 28, 28], [N, 784])")
    p.add_argument("-o", "--output", required=True, help="scores .npy (int64 [N, classes])")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("eval", help="accuracy of the golden model on a labelled test set",
                       description="bnnhw eval MODEL (--mnist DIR | --inputs X.npy --labels "
                                   "Y.npy | --digits): correct predictions of the golden model")
    p.add_argument("model")
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--mnist", metavar="DIR",
                      help="folder with t10k-images-idx3-ubyte(.gz) and "
                           "t10k-labels-idx1-ubyte(.gz)")
    data.add_argument("--inputs", metavar="X.npy",
                      help="uint8 raw inputs as for run (with --labels)")
    data.add_argument("--digits", action="store_true",
                      help="scikit-learn digits, the held-out split of the example model "
                           "(compared with the accuracy its training report records)")
    p.add_argument("--labels", metavar="Y.npy",
                   help="integer class per input [N] (with --inputs)")
    p.add_argument("--limit", type=int, default=0, help="only the first N images")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("convert", help="convert a model file (e.g. BNN-PYNQ) to bnnhw's format")
    p.add_argument("model")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("demo", help="the main job: example model end to end")
    p.add_argument("-o", "--output", default="build/demo", help="folder for the demo's outputs")
    p.add_argument("--quick", action="store_true",
                   help="skip place and route (FPGA latency at an assumed 100 MHz clock)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train-example",
                       help="train the example BNN on scikit-learn's 8x8 digits (NumPy only)")
    p.add_argument("-o", "--output", default="digits_bnn.npz",
                   help="model file to write; its report goes next to it as .json "
                        "(default: digits_bnn.npz)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    p.add_argument("--epochs", type=int, default=None,
                   help="training epochs (default: the committed model's)")
    p.set_defaults(func=cmd_train_example)

    p = sub.add_parser("firmware", help="C/NEON firmware: generate + build a runner, or run it",
                       description="bnnhw firmware MODEL -o DIR: write DIR/generated (C headers) "
                                   "and build the runner; bnnhw firmware run MODEL INPUT.npy -o "
                                   "SCORES.npy: scores from the firmware (ARM under qemu-user)")
    p.add_argument("args", nargs="+", metavar="[run] MODEL [INPUT.npy]")
    p.add_argument("-o", "--output", required=True, help="output folder, or scores .npy for run")
    p.add_argument("--target", default="host", choices=("host", "aarch64", "armv7"))
    p.add_argument("--impl", default="neon", choices=("neon", "scalar"),
                   help="NEON kernels (through SIMDe on the host) or the scalar twin only")
    p.set_defaults(func=cmd_firmware)

    p = sub.add_parser("generate", help="Verilog core + manifest.json + golden vectors.npz",
                       description="bnnhw generate MODEL -o DIR: write the network core as one "
                                   "Verilog file, its manifest and golden test vectors")
    p.add_argument("model")
    p.add_argument("-o", "--output", required=True, help="output folder (replaced atomically)")
    p.add_argument("--folding", metavar="FILE", default=None,
                   help="JSON {layer: {PE, SIMD}} (default: the model's, e.g. FINN's)")
    p.add_argument("--target-fps", type=float, default=None, metavar="N",
                   help="choose the cheapest folding reaching N images/s")
    p.add_argument("--clock-mhz", type=float, default=100.0,
                   help="clock for --target-fps and the estimates (default 100)")
    p.add_argument("--probes", action="store_true",
                   help="add a frame-end probe port per stage (the testbench then times "
                        "every stage)")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("simulate", help="scores from the generated Verilog (cocotb simulation)")
    p.add_argument("model")
    p.add_argument("input", help=".npy of uint8 raw inputs, as for run")
    p.add_argument("-o", "--output", required=True, help="scores .npy (int64 [N, classes])")
    p.add_argument("--sim", default="icarus", choices=("icarus", "verilator"))
    p.add_argument("--folding", metavar="FILE", default=None)
    p.add_argument("--build-dir", default=None,
                   help="build folder (default: build/<model>-<id>-<folding hash>)")
    p.add_argument("--stress", action="store_true",
                   help="stream the inputs again with random valid gaps and backpressure and "
                        "check that the scores do not change")
    p.add_argument("--verilator-opt", default="balanced",
                   choices=("balanced", "fast-build", "default"),
                   help="C++ optimisation of the Verilator build (fast-build: quicker build, "
                        "~3x slower simulation)")
    p.set_defaults(func=cmd_simulate)

    # Feature commands register themselves below (generate, simulate, firmware, train-example).
    from . import cli_asic  # LOCAL WIRING (lead: drop; add cli_asic to COMMAND_MODULES)
    cli_asic.register(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except BnnhwError as e:
        print(f"bnnhw: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        # A path the user named that cannot be used (a file where a folder is wanted, no
        # permission, a full disk): name it, in one line, like any other bad input.
        where = f"{str(e.filename)!r}: " if e.filename else ""
        print(f"bnnhw: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bnnhw: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

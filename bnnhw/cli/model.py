"""Model commands: ``info``, ``run``, ``eval``, ``convert``, ``train-example``."""

import json
import time
from pathlib import Path

import numpy as np

from ..errors import BnnhwError, InputError
from ._common import check_output_file, load_input, load_net, preview, save_scores

__all__ = ["register"]


def _dash(v):
    return "-" if v in (None, 0) else str(v)


def cmd_info(args):
    from ..model.summary import model_summary
    net = load_net(args.model)
    rows = model_summary(net)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
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


def cmd_run(args):
    from .. import golden
    check_output_file(args.output)
    net = load_net(args.model)
    x = load_input(args.input)
    scores = golden.forward(net, x)
    save_scores(args.output, scores)
    print(f"{scores.shape[0]} images -> {args.output} (predicted: "
          f"{preview(np.argmax(scores, axis=1))})")


#: The largest training report read (the committed one is ~20 kB).
MAX_REPORT_BYTES = 16 << 20


def _digits_report(net, model_path):
    """The training report recorded for ``net`` (next to the model, or the packaged example's),
    when its fingerprint matches, else ``None``. A report travels with a model: it is read as
    untrusted (size bounded, strict JSON, the fields ``eval`` uses checked)."""
    from ..examples import EXAMPLE_REPORT
    from ..model.schema import strict_json
    fingerprint = net.fingerprint()
    for candidate in (Path(model_path).with_suffix(".json"), EXAMPLE_REPORT):
        try:
            if not candidate.is_file() or candidate.stat().st_size > MAX_REPORT_BYTES:
                continue
            report = strict_json(candidate.read_text(), f"training report {str(candidate)!r}",
                                 error=InputError)
        except (OSError, UnicodeDecodeError, InputError):
            continue
        if isinstance(report, dict) and report.get("fingerprint") == fingerprint:
            _check_report(report, candidate)
            return candidate, report
    return None, None


def _check_report(report, path):
    """The fields of a training report that ``eval --digits`` reads, or one clear error."""
    def field(*keys, kind, low=None, high=None):
        value = report
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        ok = isinstance(value, kind) and not isinstance(value, bool) and (
            low is None or value >= low) and (high is None or value <= high)
        if not ok:
            raise InputError(f"training report {str(path)!r}: {'.'.join(keys)} must be "
                             f"{'an integer' if kind is int else 'a number'}"
                             f"{'' if low is None else f' from {low}'}"
                             f"{'' if high is None else f' to {high}'}, not {value!r}")
    field("split", "seed", kind=int, low=0, high=2 ** 63 - 1)
    field("split", "test_fraction", kind=(int, float), low=0.01, high=0.99)
    field("split", "test_images", kind=int, low=1, high=10 ** 6)
    field("accuracy", "golden_test", kind=(int, float), low=0, high=1)
    field("test_correct", kind=int, low=0, high=10 ** 6)


def _eval_data(args, net):
    """``(images, labels, source, report)`` of the data set that ``eval`` was asked for."""
    from ..model.datasets import digits_split, load_labels, load_mnist
    if args.mnist is not None:
        images, labels = load_mnist(args.mnist)
        return images, labels.astype(np.int64), f"MNIST folder {str(args.mnist)!r}", None
    if args.digits:
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
    from .. import golden
    from ..model.datasets import check_labels
    if args.labels is not None and args.inputs is None:
        raise InputError("--labels goes with --inputs X.npy")
    if args.limit < 0:
        raise InputError(f"--limit must be a number of images >= 0 (0: all), not {args.limit}")
    net = load_net(args.model)
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
    from ..model import save_model
    check_output_file(args.output)
    net = load_net(args.model)
    save_model(net, args.output)
    print(f"{args.model} -> {args.output} (bnnhw model format, id {net.fingerprint()})")


def cmd_train_example(args):
    from ..examples import train_digits
    net, report = train_digits(seed=args.seed, epochs=args.epochs, out=args.output)
    acc = report["accuracy"]
    print(f"{net.name} (id {net.fingerprint()}): held-out accuracy "
          f"{100 * acc['golden_test']:.2f} % golden ({report['test_correct']}/"
          f"{report['split']['test_images']}), {100 * acc['float_test']:.2f} % float twin; "
          f"trained in {report['train_seconds']:.1f} s -> {args.output} "
          f"(+ {Path(args.output).with_suffix('.json')})")


def register(sub):
    """Add the model commands to the ``bnnhw`` subparsers."""
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

    p = sub.add_parser("train-example",
                       help="train the example BNN on scikit-learn's 8x8 digits (NumPy only)")
    p.add_argument("-o", "--output", default="digits_bnn.npz",
                   help="model file to write; its report goes next to it as .json "
                        "(default: digits_bnn.npz)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    p.add_argument("--epochs", type=int, default=None,
                   help="training epochs (default: the committed model's)")
    p.set_defaults(func=cmd_train_example)

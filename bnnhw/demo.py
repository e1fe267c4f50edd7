"""The main job: the project's own example model, end to end.

Runs on data and a model that the project itself produced (scikit-learn's 8x8 digits and
``bnnhw/examples/digits_bnn.npz``), so it needs nothing from outside the repository.
"""

import json
import time
from importlib import resources
from pathlib import Path

import numpy as np

from . import golden
from .errors import BnnhwError, ModelError
from .model import load_model

__all__ = ["example_model_path", "run_demo"]


def example_model_path():
    """Path of the committed example model."""
    return Path(resources.files("bnnhw") / "examples" / "digits_bnn.npz")


def _heading(text):
    print(f"\n== {text} " + "=" * max(0, 70 - len(text)))


def _held_out():
    from .examples.train_digits import digits_split
    _, _, x_test, y_test = digits_split()
    return x_test, y_test


def step_model(ctx):
    path = example_model_path()
    if not path.exists():
        raise ModelError(f"example model {str(path)!r} is missing (run `bnnhw train-example`)")
    net = load_model(path)
    ctx["net"] = net
    recorded = json.loads(path.with_suffix(".json").read_text())
    ctx["recorded"] = recorded
    _heading("example model")
    from .cli import model_summary
    s = model_summary(net)
    print(f"{net.name} (id {net.fingerprint()}): {len(net.layers)} layers, "
          f"{s['total_operations']:,} binary ops and {s['total_weight_bits']:,} weight bits "
          f"per image; trained by bnnhw.examples.train_digits")
    for r in s["layers"]:
        extra = f" K={r['K']} acc={r['acc_bits']} bits" if r["K"] else ""
        print(f"  {r['name']:<7} {r['kind']:<16} {'x'.join(map(str, r['input_shape'])):>8} -> "
              f"{'x'.join(map(str, r['output_shape'])):<8}{extra}")


def step_golden(ctx):
    net = ctx["net"]
    x, y = _held_out()
    ctx["x"], ctx["y"] = x, y
    _heading("golden model (NumPy, bit-exact reference)")
    golden.forward(net, x[:16])
    times = []
    for _ in range(5):
        start = time.perf_counter()
        scores = golden.forward(net, x)
        times.append(time.perf_counter() - start)
    ctx["scores"] = scores
    pred = np.argmax(scores, axis=1)
    correct = int((pred == y).sum())
    accuracy = correct / len(y)
    print(f"held-out accuracy: {correct}/{len(y)} = {100 * accuracy:.2f} % "
          f"(recorded at training: "
          f"{100 * ctx['recorded']['accuracy']['golden_test']:.2f} %)")
    print(f"throughput: {len(y) / np.median(times):,.0f} images/s (median of 5 batches of "
          f"{len(y)})")
    if abs(accuracy - ctx["recorded"]["accuracy"]["golden_test"]) > 1e-9:
        raise BnnhwError("golden accuracy differs from the recorded accuracy of the example "
                         "model")
    ctx["results"]["golden"] = {"accuracy": accuracy,
                                "images_per_s": len(y) / float(np.median(times))}


STEPS = [("model", step_model), ("golden", step_golden)]


def run_demo(args):
    """Run every demo step in order; write a JSON summary into ``args.output``."""
    out = Path(getattr(args, "output", "build/demo"))
    out.mkdir(parents=True, exist_ok=True)
    ctx = {"args": args, "out": out, "results": {}}
    for name, step in STEPS:
        step(ctx)
    (out / "summary.json").write_text(json.dumps(ctx["results"], indent=2) + "\n")
    _heading("done")
    print(f"summary: {out / 'summary.json'}")

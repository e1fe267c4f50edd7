"""Larq Compute Engine's x86 interpreter on bnnhw's reference layer (optional peer benchmark).

Runs inside a separate virtual environment that holds Larq Compute Engine and what its converter
needs, never the project's own (about 2 GB):

    python3 -m venv /tmp/lce-venv
    /tmp/lce-venv/bin/pip install tensorflow-cpu==2.16.1 tf-keras==2.16.0 larq==0.13.3 \\
        numpy==1.26.4 larq-compute-engine==0.16.0

Normally started by `benchmarks/fw_bench.py --lce-venv /tmp/lce-venv`, which writes the layer's
data and the expected outputs (bnnhw's bit convention: bit 1 = +1) to an .npz file, and records
the times printed here (JSON) beside bnnhw's host timings of the same run:

    /tmp/lce-venv/bin/python benchmarks/lce_bench.py DATA.npz --repeats 11 --json OUT.json

With --serve it converts and checks once, prints one JSON line (versions, exactness), then
answers each line "time R" on stdin with one JSON line of medians over R calls per model, until
"quit": fw_bench.py interleaves these rounds with its own timings, so that both see the same
load on a shared machine (starting TensorFlow takes a minute, too long to repeat per round).

The layer: 3x3 binary convolution, 56x56x64 -> 64, padding 1 with +1 (LCE's default pad value),
one image. Two LCE models of it, each converted with larq_compute_engine.convert_keras_model
and run by larq_compute_engine's Interpreter (one thread) with its default and with its
indirect-BGEMM kernel: the float output y (the integer dot product 2P - K), and a thresholded
binary output (batch norm with integer means folded into thresholds, then sign, as bnnhw's
folded thresholds: bit = y >= T). Every output is compared exactly with the expected values.
Times are medians of `--repeats` Interpreter.predict calls (they include LCE's packing of the
float +-1 input into bits and the Python call).
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")     # larq 0.13 needs Keras 2 (tf-keras)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def build_models(w_hwio, means):
    import larq as lq
    import tensorflow as tf
    kw = dict(padding="same", pad_values=1.0, input_quantizer="ste_sign",
              kernel_quantizer="ste_sign", kernel_constraint="weight_clip", use_bias=False)
    h, w, c, oc = 56, 56, w_hwio.shape[2], w_hwio.shape[3]
    inp = tf.keras.Input((h, w, c))
    conv = lq.layers.QuantConv2D(oc, 3, **kw)
    float_model = tf.keras.Model(inp, conv(inp))
    conv.set_weights([w_hwio])
    # thresholded: BN(y) = (y - mean) / sqrt(var + eps) with var + eps = 1, then sign
    inp2 = tf.keras.Input((h, w, c))
    conv2 = lq.layers.QuantConv2D(oc, 3, **kw)
    bn = tf.keras.layers.BatchNormalization(epsilon=1e-3)
    y = conv2(inp2)
    out = lq.quantizers.SteSign()(bn(y))
    bin_model = tf.keras.Model(inp2, out)
    conv2.set_weights([w_hwio])
    bn.set_weights([np.ones(oc, np.float32), np.zeros(oc, np.float32), means.astype(np.float32),
                    np.full(oc, 1 - 1e-3, np.float32)])
    return float_model, bin_model


def time_predict(interpreter, x, repeats):
    out = interpreter.predict(x)                     # warm-up, and the output to check
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        interpreter.predict(x)
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times), np.asarray(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help=".npz written by fw_bench.py (x_bits, w, means, y, bits)")
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--json", help="write the results here (else print them)")
    ap.add_argument("--serve", action="store_true",
                    help="after the first run, time rounds on request (see above)")
    args = ap.parse_args()
    import larq_compute_engine as lce
    import tensorflow as tf
    from larq_compute_engine.tflite.python.interpreter import Interpreter
    d = np.load(args.data)
    x = (d["x_bits"].astype(np.float32) * 2 - 1)[None]            # [1, 56, 56, 64], +-1
    w_hwio = np.transpose(d["w"].astype(np.float32), (2, 3, 1, 0))  # [O,C,kh,kw] -> HWIO
    float_model, bin_model = build_models(w_hwio, d["means"])
    results = {"versions": {"larq-compute-engine": lce.__version__, "tensorflow": tf.__version__,
                            "python": sys.version.split()[0]}, "runs": []}
    y_flat = lce.convert_keras_model(float_model)
    y_bits = lce.convert_keras_model(bin_model)
    interps = []
    for name, model, kwargs, expected in [
            ("float y, default kernel", y_flat, {}, d["y"]),
            ("float y, indirect BGEMM", y_flat, {"use_indirect_bgemm": True}, d["y"]),
            ("thresholded bits, default kernel", y_bits, {}, d["bits"] * 2 - 1),
            ("thresholded bits, indirect BGEMM", y_bits, {"use_indirect_bgemm": True},
             d["bits"] * 2 - 1)]:
        interp = Interpreter(model, num_threads=1, **kwargs)
        interps.append((name, interp))
        ns, out = time_predict(interp, x, args.repeats)
        out = out.reshape(expected.shape)
        exact = bool(np.array_equal(out, expected.astype(out.dtype)))
        mismatches = int(np.count_nonzero(out != expected))
        results["runs"].append({"name": name, "ns_median": ns, "exact": exact,
                                "mismatches": mismatches})
        print(f"lce_bench: {name}: {ns / 1e6:.2f} ms, exact {exact} ({mismatches} mismatches)",
              file=sys.stderr, flush=True)
    if args.serve:
        print(json.dumps(results), flush=True)
        for line in sys.stdin:
            words = line.split()
            if not words or words[0] == "quit":
                break
            repeats = int(words[1])
            print(json.dumps({"runs": [{"name": name, "ns_median": time_predict(i, x, repeats)[0]}
                                       for name, i in interps]}), flush=True)
        return
    text = json.dumps(results, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text)
    else:
        print(text)


if __name__ == "__main__":
    main()

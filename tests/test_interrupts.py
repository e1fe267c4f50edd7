"""SIGTERM and SIGINT clean up; caches heal themselves when an entry is damaged.

``bnnhw generate`` is started as a real process and interrupted while it elaborates (its
temporary folder exists): it must exit with 128 + the signal number and one line, remove its
temporary folder, and leave a previous output exactly as it was. The simulator and firmware
variants (child processes) are in ``tests/sim/test_sim_interrupts.py`` and
``tests/firmware/test_fw_concurrency.py``.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from support.data import BNN_PYNQ
from support.procs import descendants, running, wait_for


def _default_signal_handlers():
    # A suite started as a background job inherits SIGINT ignored, and bnnhw keeps an
    # ignored signal ignored (as nohup asks): the child must start from the defaults.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def _temporaries(folder):
    return sorted(p.name for p in folder.iterdir() if ".tmp." in p.name or ".old." in p.name)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_interrupted_generate_leaves_nothing_and_keeps_the_old_output(tmp_path, signum):
    from bnnhw.cli import main
    from bnnhw.demo import example_model_path
    out = tmp_path / "core"
    assert main(["generate", str(example_model_path()), "-o", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    env = dict(os.environ, BNNHW_BUILD_ROOT=str(tmp_path / "root"))
    proc = subprocess.Popen([sys.executable, "-m", "bnnhw", "generate",
                             str(BNN_PYNQ / "lfcW1A1_mnist.npz"), "-o", str(out)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_signal_handlers)
    try:
        # The temporary folder is made right after the checks, before the long work.
        temps = wait_for(lambda: _temporaries(tmp_path), 60, "the temporary output folder")
        assert temps[0].startswith(".core.tmp.")
        children = descendants(proc.pid)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signum, err
    assert err == f"bnnhw: interrupted by {signal.Signals(signum).name}\n"
    assert _temporaries(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["core"]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before      # the old output
    assert running(children) == {}


def test_interrupt_handler_is_restored_after_main():
    """``main`` installs its handlers for the command only (in-process callers keep theirs)."""
    from bnnhw.cli import main
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    with pytest.raises(SystemExit):
        main(["--help"])
    assert main(["info", str(BNN_PYNQ / "lfcW1A1_mnist.npz")]) == 0
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_child_group_dies_with_an_interrupted_call(tmp_path):
    """:func:`bnnhw.procs.run` kills its child's whole process group (the child and what it
    started, here a grandchild that ignores SIGTERM) when the call is interrupted."""
    from bnnhw import procs
    script = tmp_path / "tree.sh"
    script.write_text("trap '' TERM\nsleep 300 &\necho $! > grandchild\nwait\n")
    import threading

    def interrupt_soon():
        wait_for(lambda: (tmp_path / "grandchild").exists() and
                 (tmp_path / "grandchild").read_text().strip(), 30, "the grandchild")
        os.kill(os.getpid(), signal.SIGTERM)
    thread = threading.Thread(target=interrupt_soon)
    with pytest.raises(procs.Interrupted):
        with procs.handle_signals():
            thread.start()
            procs.run(["sh", str(script)], cwd=tmp_path)
    thread.join()
    grandchild = int((tmp_path / "grandchild").read_text())

    def state():
        try:
            return open(f"/proc/{grandchild}/stat").read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return None
    # SIGKILL is delivered at once but a loaded machine may take a moment to reap the
    # process (it shows as running while it exits); a grandchild that survives stays 'S'.
    deadline = time.monotonic() + 10
    while state() not in (None, "Z", "X") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state() in (None, "Z", "X"), f"grandchild {grandchild} still running ({state()})"


# -- caches heal themselves ------------------------------------------------------------------------

def _small_build(root):
    from bnnhw.flow import Build
    from support.networks import random_dense_net
    net = random_dense_net(np.random.default_rng(3), sizes=(6, 3), shape=(1, 3, 3),
                           name="healtest")
    return Build.of(net, {"fc0": {"PE": 2, "SIMD": 3}, "fc1": {"PE": 1, "SIMD": 6}},
                    root=root)


@pytest.mark.parametrize("damage", ["truncate", "same-size", "remove"])
def test_damaged_build_output_is_rebuilt(tmp_path, damage):
    build = _small_build(tmp_path / "root")
    first = build.run("generate")
    vectors = build.path("core", "vectors.npz")
    good = vectors.read_bytes()
    if damage == "truncate":
        vectors.write_bytes(good[:len(good) // 2])
    elif damage == "same-size":
        vectors.write_bytes(bytes(len(good)))
    else:
        vectors.unlink()
    again = _small_build(tmp_path / "root").run("generate")       # as a new process would
    assert not again["skipped"] and again["key"] == first["key"]
    assert vectors.read_bytes() == good
    third = _small_build(tmp_path / "root").run("generate")
    assert third["skipped"]


def test_undamaged_build_output_is_reused(tmp_path):
    """The check is exact, not eager: an intact output is skipped, its digest recorded."""
    build = _small_build(tmp_path / "root")
    first = build.run("generate")
    record = json.loads(build.record_path.read_text())["steps"]["generate"]
    assert set(record["digests"]) == set(record["outputs"]) == set(first["outputs"])
    assert _small_build(tmp_path / "root").run("generate")["skipped"]


def test_corrupt_resource_cache_entry_is_recomputed(tmp_path):
    from bnnhw.gen.resources import _cached
    calls = []

    def compute():
        calls.append(1)
        return {"lut4": 12}
    assert _cached(tmp_path, ["key"], compute) == {"lut4": 12}
    assert _cached(tmp_path, ["key"], compute)["cached"] is True and len(calls) == 1
    (entry,) = tmp_path.glob("*.json")
    entry.write_text('{"lut4": 1')                                    # cut short
    assert _cached(tmp_path, ["key"], compute) == {"lut4": 12} and len(calls) == 2
    assert json.loads(entry.read_text()) == {"lut4": 12}
    assert [p.name for p in tmp_path.iterdir()] == [entry.name]       # no temporaries

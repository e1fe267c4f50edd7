"""The build flow: build.json, skipping current steps, rebuilding stale ones, one lock."""

import json
import multiprocessing
import shutil
from importlib import resources
from pathlib import Path

import pytest

import bnnhw
from bnnhw.errors import InputError
from bnnhw.flow import Build, BuildConfig, build_root
from bnnhw.flow import config as flow_config
from support.networks import random_dense_net

FOLDING = {"fc0": {"PE": 3, "SIMD": 8}, "fc1": {"PE": 2, "SIMD": 6}}


def small_build(tmp_path, **config):
    net = random_dense_net(4, shape=(1, 4, 6), hidden=(6,), classes=4, name="flowtest")
    return Build.of(net, FOLDING, root=tmp_path / "root", **config)


def test_build_json_records_every_step(tmp_path):
    build = small_build(tmp_path)
    rec = build.run("generate")
    assert not rec["skipped"] and rec["outputs"][0] == "core/manifest.json"
    data = json.loads(build.record_path.read_text())
    assert data["format"] == "bnnhw-build" and set(data["steps"]) == {"check", "generate"}
    step = data["steps"]["generate"]
    assert set(step) >= {"key", "inputs", "outputs", "metrics", "seconds", "finished"}
    assert step["inputs"]["tools"]["amaranth"] and step["inputs"]["sources"]
    assert step["inputs"]["upstream"] == {"check": data["steps"]["check"]["key"]}
    assert step["metrics"]["cycles_per_image"] == json.loads(
        build.path("core", "manifest.json").read_text())["core"]["cycles_per_image"]
    assert data["config"]["folding"] == FOLDING
    assert build.folder.parent == tmp_path / "root"
    assert build.folder.name.startswith("flowtest-")


def test_current_step_is_skipped_and_missing_output_rebuilt(tmp_path):
    build = small_build(tmp_path)
    first = build.run("generate")
    again = small_build(tmp_path).run("generate")       # a new process would do the same
    assert again["skipped"] and again["key"] == first["key"]
    build.path("core", "manifest.json").unlink()
    redo = small_build(tmp_path).run("generate")
    assert not redo["skipped"] and build.path("core", "manifest.json").exists()


def test_changed_source_reruns_the_step(tmp_path, monkeypatch):
    build = small_build(tmp_path)
    first = build.run("generate")
    # A copy of bnnhw's sources with one hardware file changed stands for an edited checkout.
    copy = tmp_path / "src"
    shutil.copytree(Path(str(resources.files("bnnhw"))), copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "hw" / "mvtu.py", "a") as f:
        f.write("\n# an edit\n")
    monkeypatch.setitem(flow_config._SOURCE_OVERRIDE, "bnnhw", str(copy))
    rerun = small_build(tmp_path).run("generate")
    assert not rerun["skipped"] and rerun["key"] != first["key"]
    assert rerun["inputs"]["sources"] != first["inputs"]["sources"]
    # check does not read bnnhw/hw: it stays current.
    record = json.loads(build.record_path.read_text())["steps"]
    assert record["check"]["key"] == first["inputs"]["upstream"]["check"]


def test_changed_tool_version_reruns_the_step(tmp_path, monkeypatch):
    build = small_build(tmp_path)
    first = build.run("generate")
    import bnnhw.flow.steps as steps
    real = steps.versions
    monkeypatch.setattr(steps, "versions", lambda tools: {
        **real(tools), **({"amaranth": "9.9.9"} if "amaranth" in tools else {})})
    rerun = small_build(tmp_path).run("generate")
    assert not rerun["skipped"] and rerun["inputs"]["tools"]["amaranth"] == "9.9.9"
    assert rerun["key"] != first["key"]


def test_other_config_other_folder(tmp_path):
    a = small_build(tmp_path)
    b = small_build(tmp_path, clock_mhz=50.0)
    c = small_build(tmp_path, simulator="icarus")
    assert a.folder != b.folder
    assert a.folder == c.folder            # the simulator keys the simulate step only


def test_corrupt_build_json_heals(tmp_path):
    build = small_build(tmp_path)
    build.run("check")
    build.record_path.write_text("{ not json")
    rec = small_build(tmp_path).run("check")
    assert not rec["skipped"]
    assert json.loads(build.record_path.read_text())["steps"]["check"]["key"] == rec["key"]


def test_bad_requests_are_one_line_errors(tmp_path):
    build = small_build(tmp_path)
    with pytest.raises(InputError, match="unknown build step 'bake'"):
        build.run("bake")
    with pytest.raises(InputError, match="build step 'generate' takes no parameter 'speed'"):
        build.run("generate", speed=3)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is not a directory"):
        build_root(tmp_path / "file")
    net = bnnhw.load_model(Path(str(resources.files("bnnhw") / "examples" / "digits_bnn.npz")))
    with pytest.raises(InputError, match="build configuration is for model"):
        Build(net, build.config, root=tmp_path)


def test_folder_name_is_safe_for_any_model_name():
    cfg = BuildConfig(model="../../etc/x y", fingerprint="0123456789abcdef", folding={})
    name = cfg.folder_name()
    assert "/" not in name and not name.startswith(".") and " " not in name


def test_report_follows_the_record(tmp_path):
    build = small_build(tmp_path)
    build.run("check")
    first = build.run("report")
    assert build.run("report")["skipped"]
    build.run("golden")
    assert not build.run("report")["skipped"]
    text = build.path("report.md").read_text()
    assert "| golden |" in text and "| check |" in text and first["outputs"]


def _generate_in_child(root):
    net = random_dense_net(4, shape=(1, 4, 6), hidden=(6,), classes=4, name="flowtest")
    Build.of(net, FOLDING, root=root).run("generate")


def test_concurrent_builds_share_one_folder(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_generate_in_child, args=(tmp_path / "root",)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    build = small_build(tmp_path)
    record = json.loads(build.record_path.read_text())
    assert "generate" in record["steps"]
    assert build.run("generate")["skipped"]
    leftovers = [p.name for p in build.folder.rglob("*") if ".tmp" in p.name]
    assert leftovers == []


def test_build_root_option_lasts_one_command(tmp_path, monkeypatch):
    """``bnnhw --build-root`` reaches the command (and its children) through the environment,
    and ``main()`` called as a library restores the caller's value afterwards."""
    import os

    from bnnhw.cli import main
    from support.data import BNN_PYNQ
    monkeypatch.setenv("BNNHW_BUILD_ROOT", str(tmp_path / "callers"))
    assert main(["--build-root", str(tmp_path / "other"), "info",
                 str(BNN_PYNQ / "lfcW1A1_mnist.npz")]) == 0
    assert os.environ["BNNHW_BUILD_ROOT"] == str(tmp_path / "callers")
    monkeypatch.delenv("BNNHW_BUILD_ROOT")
    assert main(["--build-root", str(tmp_path / "other"), "info",
                 str(BNN_PYNQ / "lfcW1A1_mnist.npz")]) == 0
    assert "BNNHW_BUILD_ROOT" not in os.environ

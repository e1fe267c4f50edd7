"""``bnnhw generate`` and ``bnnhw simulate`` from the command line."""

import json
from pathlib import Path

import numpy as np
import pytest

from bnnhw import golden
from bnnhw.cli import main
from bnnhw.model.io import save_model
from support.networks import random_dense_net

pytestmark = pytest.mark.cocotb


@pytest.fixture
def small_model(tmp_path):
    net = random_dense_net(np.random.default_rng(11), sizes=(6, 4), shape=(1, 4, 4),
                           name="cli_dense")
    path = tmp_path / "m.npz"
    save_model(net, path)
    return net, path


def test_generate_cli(small_model, tmp_path, capsys):
    net, path = small_model
    folding = tmp_path / "f.json"
    folding.write_text(json.dumps({"fc0": {"PE": 2, "SIMD": 4}, "fc1": {"PE": 1, "SIMD": 3}}))
    assert main(["generate", str(path), "-o", str(tmp_path / "out"),
                 "--folding", str(folding)]) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["folding"] == json.loads(folding.read_text())
    assert manifest["model"]["fingerprint"] == net.fingerprint()
    assert "cycles/image" in capsys.readouterr().out


def test_generate_cli_errors_leave_nothing(small_model, tmp_path, capsys):
    _, path = small_model
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"fc0": {"PE": 0, "SIMD": 4}}))
    assert main(["generate", str(path), "-o", str(tmp_path / "out"), "--folding",
                 str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bnnhw: error: ") and "fc0" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    assert main(["generate", str(path), "-o", str(tmp_path / "out"), "--folding", str(bad),
                 "--target-fps", "1000"]) == 2
    assert "not both" in capsys.readouterr().err


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_simulate_cli_matches_golden(small_model, tmp_path, simulator, monkeypatch):
    net, path = small_model
    monkeypatch.setenv("BNNHW_BUILD_ROOT", str(tmp_path / "build"))
    x = np.random.default_rng(3).integers(0, 256, size=(5, 16), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    argv = ["simulate", str(path), str(tmp_path / "x.npy"), "-o", str(tmp_path / "s.npy"),
            "--sim", simulator]
    assert main(argv) == 0
    scores = np.load(tmp_path / "s.npy")
    assert scores.dtype == np.int64
    assert np.array_equal(scores, golden.forward(net, x))
    # One build folder under the build root, named by the model and its configuration.
    folders = list((tmp_path / "build").iterdir())
    assert len(folders) == 1 and net.fingerprint()[:10] in folders[0].name
    steps = json.loads((folders[0] / "build.json").read_text())["steps"]
    generated = steps["generate"]["finished"], steps["generate"]["key"]
    # Same inputs again: every step is current, nothing is regenerated.
    assert main(argv) == 0
    again = json.loads((folders[0] / "build.json").read_text())["steps"]["generate"]
    assert (again["finished"], again["key"]) == generated
    # A changed hardware source (a copy of bnnhw with one edit stands for an edited
    # checkout): the next simulate regenerates the core before simulating it.
    import shutil
    from importlib import resources

    from bnnhw.flow import config as flow_config
    copy = tmp_path / "src"
    shutil.copytree(Path(str(resources.files("bnnhw"))), copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "hw" / "window.py", "a") as f:
        f.write("\n# an edit\n")
    monkeypatch.setitem(flow_config._SOURCE_OVERRIDE, "bnnhw", str(copy))
    assert main(argv) == 0
    record = json.loads((folders[0] / "build.json").read_text())["steps"]
    assert record["generate"]["key"] != generated[1]
    sims = [k for k in record if k.startswith("simulate:")]
    assert len(sims) == 1 and record[sims[0]]["inputs"]["upstream"]["generate"] == \
        record["generate"]["key"]
    assert np.array_equal(np.load(tmp_path / "s.npy"), scores)


def test_simulate_cli_bad_input(small_model, tmp_path, capsys):
    _, path = small_model
    np.save(tmp_path / "x.npy", np.zeros((2, 15), np.uint8))
    assert main(["simulate", str(path), str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "s.npy")]) == 2
    assert "must have shape" in capsys.readouterr().err
    assert not (tmp_path / "s.npy").exists()

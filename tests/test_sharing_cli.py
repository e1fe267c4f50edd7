"""``bnnhw share``: the table's numbers are the library's, JSON and plot, bad input."""

import json
import re

import pytest

import bnnhw
from bnnhw.cli import main
from bnnhw.examples import EXAMPLE_MODEL
from bnnhw.sharing import SharingPlan, make_plan, plan_counts
from support.data import BNN_PYNQ, shared_file


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def table_rows(out):
    """``{layer: [cells]}`` of the printed table (cells split on runs of 2+ spaces)."""
    rows = {}
    for line in out.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells and re.fullmatch(r"conv\d+|total", cells[0]) and len(cells) > 3:
            rows[cells[0]] = cells[1:]
    return rows


def number(cell):
    return float(cell.replace(",", "").replace(" %", ""))


@pytest.fixture(scope="module")
def cnv_counts(cnv):
    plans = {m: make_plan(cnv, m) for m in ("exact", "similar:1", "approx:1")}
    return plans, {m: plan_counts(p) for m, p in plans.items()}


def assert_matches_library(rows, counts, modes, main_mode):
    names = [r.name for r in counts[modes[0]][0]] + ["total"]
    assert list(rows) == names
    for i, name in enumerate(names):
        cells = rows[name]
        lib = {m: (counts[m][0][i] if name != "total" else counts[m][1]) for m in modes}
        assert number(cells[0]) == lib[modes[0]].unshared
        for k, m in enumerate(modes):
            assert number(cells[1 + 2 * k]) == round(lib[m].shared, 1), (name, m)
            assert number(cells[2 + 2 * k]) == round(100 * lib[m].reduction, 1), (name, m)
        assert number(cells[-2]) == lib[main_mode].correction_bits
        assert number(cells[-1]) == lib[main_mode].inversions


def test_share_cnv_table_json_plot(capsys, tmp_path, cnv, cnv_counts):
    model = BNN_PYNQ / "cnvW1A1_cifar10.npz"
    code, out, err = run(capsys, "share", model, "--approximate", "--json",
                         tmp_path / "r.json", "--plot", tmp_path / "r.png")
    assert code == 0, err
    assert "exact" in out and "similar:1" in out and "approx:1" in out
    plans, counts = cnv_counts
    assert_matches_library(table_rows(out), counts, ["exact", "similar:1", "approx:1"],
                           "similar:1")
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["plan_mode"] == "approx:1" and report["fingerprint"] == cnv.fingerprint()
    total = counts["similar:1"][1]
    assert report["modes"]["similar:1"]["total"]["shared"] == pytest.approx(total.shared)
    assert report["modes"]["similar:1"]["total"]["correction_bits"] == total.correction_bits
    assert SharingPlan.load(tmp_path / "r.json") == plans["approx:1"]
    png = (tmp_path / "r.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_share_exact_only_and_distance(capsys, cnv_counts):
    code, out, _ = run(capsys, "share", BNN_PYNQ / "cnvW1A1_cifar10.npz", "--max-distance", "0")
    assert code == 0
    rows = table_rows(out)
    assert "similar" not in out
    counts, total = cnv_counts[1]["exact"]
    assert number(rows["total"][1]) == total.shared
    assert number(rows["conv1"][2]) == round(100 * counts[0].reduction, 1)


def test_share_example_model(capsys, tmp_path):
    net = bnnhw.load_model(EXAMPLE_MODEL)
    code, out, _ = run(capsys, "share", EXAMPLE_MODEL, "--max-distance", "2", "--approximate")
    assert code == 0
    modes = ["exact", "similar:2", "approx:2"]
    assert_matches_library(table_rows(out), {m: plan_counts(make_plan(net, m)) for m in modes},
                           modes, "similar:2")


@pytest.mark.parametrize("argv, message", [
    (["--max-distance", "-1"], "--max-distance must be an integer >= 0, not -1"),
    (["--max-distance", "1.5"], "--max-distance must be an integer >= 0, not '1.5'"),
    (["--max-distance", "two"], "--max-distance must be an integer >= 0, not 'two'"),
    (["--max-distance", "0", "--approximate"], "--approximate needs --max-distance >= 1"),
])
def test_share_bad_distance(capsys, tmp_path, argv, message):
    out_json = tmp_path / "r.json"
    code, out, err = run(capsys, "share", BNN_PYNQ / "cnvW1A1_cifar10.npz", *argv,
                         "--json", out_json)
    assert code == 2 and out == ""
    assert err.startswith(f"bnnhw: error: {message}") and err.count("\n") == 1
    assert not out_json.exists()


def test_share_model_without_binary_convolution(capsys, tmp_path):
    code, out, err = run(capsys, "share", shared_file("bnn-pynq", "lfcW1A1_mnist.npz"),
                         "--json", tmp_path / "r.json", "--plot", tmp_path / "r.png")
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert "model 'lfcW1A1_mnist' has no binary convolution" in err
    assert list(tmp_path.iterdir()) == []


def test_share_bad_paths(capsys, tmp_path):
    code, _, err = run(capsys, "share", tmp_path / "missing.npz")
    assert code == 2 and "does not exist" in err
    (tmp_path / "dir.json").mkdir()
    code, _, err = run(capsys, "share", EXAMPLE_MODEL, "--json", tmp_path / "dir.json")
    assert code == 2 and "is a directory" in err and err.count("\n") == 1
    assert [p.name for p in tmp_path.iterdir()] == ["dir.json"]
    assert not any((tmp_path / "dir.json").iterdir())


def test_share_help_lists_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "share" in capsys.readouterr().out


# -- bnnhw generate --share (hardwired layers) -------------------------------------------------

def test_generate_share(capsys, tmp_path):
    import numpy as np
    from bnnhw import golden
    folding = tmp_path / "folding.json"
    folding.write_text(json.dumps({"conv0": {"PE": 16, "SIMD": 1},
                                   "conv1": {"datapath": "hardwired", "adders": "auto"},
                                   "fc2": {"PE": 8, "SIMD": 64}, "fc3": {"PE": 10, "SIMD": 64}}))
    code, out, err = run(capsys, "generate", EXAMPLE_MODEL, "-o", tmp_path / "gen",
                         "--folding", folding, "--share", "approx:1")
    assert code == 0, err
    m = json.loads((tmp_path / "gen" / "manifest.json").read_text())
    assert m["sharing"] == "approx:1" and m["folding"]["conv1"]["sharing"] == "approx:1"
    assert m["core"]["layers"][1]["adders"] == "auto"
    net = bnnhw.load_model(EXAMPLE_MODEL)
    v = np.load(tmp_path / "gen" / "vectors.npz")
    # The golden vectors are the approximate network's (SPEC §9), not the unshared one's.
    plan = make_plan(net, "approx:1", layers=["conv1"])
    assert np.array_equal(v["scores"], golden.forward(net, v["inputs"], sharing=plan))
    assert not np.array_equal(v["scores"], golden.forward(net, v["inputs"]))
    with pytest.raises(SystemExit) as e:
        run(capsys, "generate", EXAMPLE_MODEL, "-o", tmp_path / "gen2", "--share", "similar:x")
    err = capsys.readouterr().err
    assert e.value.code == 2 and "the maximum distance must be an integer, not 'x'" in err
    code, out, err = run(capsys, "generate", EXAMPLE_MODEL, "-o", tmp_path / "gen2",
                         "--share", "exact")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "needs a layer with \"datapath\": \"hardwired\"" in err
    assert not (tmp_path / "gen2").exists()

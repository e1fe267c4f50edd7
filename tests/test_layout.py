"""The package's layout: what imports what, what ships in the wheel, and a wheel that works."""

import ast
import os
import subprocess
import sys
import tomllib

import numpy as np
import pytest

from support.data import ROOT

PACKAGE = ROOT / "bnnhw"
#: Folders of the repository that ship inside the package (pyproject's package-dir).
MAPPED = {"bnnhw.sim": ROOT / "sim", "bnnhw.boards": ROOT / "boards",
          "bnnhw.firmware": ROOT / "firmware"}


def test_model_plan_flow_and_cli_import_no_amaranth():
    code = ("import sys, bnnhw, bnnhw.model, bnnhw.model.datasets, bnnhw.model.summary, "
            "bnnhw.plan.core, bnnhw.plan.stages, bnnhw.plan.tables, bnnhw.plan.folding, "
            "bnnhw.flow, bnnhw.cli, bnnhw.golden, bnnhw.tools; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'amaranth'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_pyproject_lists_every_package():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in PACKAGE.rglob("__init__.py")
             if "__pycache__" not in p.parts}
    assert set(cfg["packages"]) == found | set(MAPPED)
    assert {k: ROOT / v for k, v in cfg["package-dir"].items()} == MAPPED


def _module_name(path):
    for pkg, folder in MAPPED.items():
        if path.is_relative_to(folder):
            rel = path.relative_to(folder).with_suffix("")
            return ".".join([pkg, *rel.parts]).removesuffix(".__init__")
    rel = path.relative_to(ROOT).with_suffix("")
    return ".".join(rel.parts).removesuffix(".__init__")


def _top_level_imports(path, name):
    """bnnhw modules imported at module level (not inside functions)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "bnnhw"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            if mod and mod.split(".")[0] == "bnnhw":
                out.add(mod)
                out |= {f"{mod}.{a.name}" for a in node.names}
    return out


def test_no_import_cycles():
    files = [p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts]
    files += [p for folder in MAPPED.values() for p in folder.rglob("*.py")]
    modules = {_module_name(p): p for p in files}
    graph = {name: {m for m in _top_level_imports(path, name) if m in modules and m != name}
             for name, path in modules.items()}
    # An import of a submodule runs its package's __init__ first: that is no cycle.
    seen, stack, cycles = set(), [], []

    def visit(node):
        if node in stack:
            cycles.append(stack[stack.index(node):] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if not node.startswith(nxt + "."):       # a package's own __init__
                visit(nxt)
        stack.pop()

    for name in sorted(graph):
        visit(name)
    assert cycles == []
    # The model layer is pure NumPy, and the core parts never import the command line.
    for name, deps in graph.items():
        if name.startswith(("bnnhw.model", "bnnhw.plan")):
            assert not any(d.startswith(("bnnhw.hw", "bnnhw.gen", "bnnhw.cli", "bnnhw.flow"))
                           for d in deps), (name, deps)
        if not name.startswith(("bnnhw.cli", "bnnhw.__main__")):
            assert not any(d.startswith("bnnhw.cli") for d in deps), (name, deps)


@pytest.mark.cocotb
@pytest.mark.firmware
def test_installed_wheel_simulates_and_runs_firmware(tmp_path):
    """A wheel installed outside the checkout finds its testbench and firmware sources."""
    wheel_dir, site, work = tmp_path / "wheel", tmp_path / "site", tmp_path / "work"
    work.mkdir()
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run(pip + ["wheel", "--no-deps", "-w", str(wheel_dir),
                          str(ROOT)], check=True, capture_output=True)
    wheel = next(wheel_dir.glob("bnnhw-*.whl"))
    subprocess.run(pip + ["install", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    assert (site / "bnnhw" / "sim" / "test_network.py").exists()
    assert (site / "bnnhw" / "firmware" / "Makefile").exists()
    from bnnhw.model import save_model
    from support.networks import random_dense_net
    net = random_dense_net(3, shape=(1, 4, 4), hidden=(8,), classes=3, name="wheeltest")
    save_model(net, work / "m.npz")
    x = np.random.default_rng(3).integers(0, 256, (3, 1, 4, 4), dtype=np.uint8)
    np.save(work / "x.npy", x)
    env = dict(os.environ, PYTHONPATH=str(site), BNNHW_BUILD_ROOT=str(tmp_path / "root"))
    env.pop("PYTEST_CURRENT_TEST", None)

    def bnnhw(*args):
        proc = subprocess.run([sys.executable, "-m", "bnnhw", *args], cwd=work, env=env,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    where = subprocess.run([sys.executable, "-c", "import bnnhw; print(bnnhw.__file__)"],
                           cwd=work, env=env, capture_output=True, text=True).stdout
    assert where.startswith(str(site)), where
    bnnhw("run", "m.npz", "x.npy", "-o", "run.npy")
    bnnhw("simulate", "m.npz", "x.npy", "-o", "sim.npy", "--sim", "icarus")
    bnnhw("firmware", "run", "m.npz", "x.npy", "-o", "fw.npy", "--impl", "scalar")
    run = np.load(work / "run.npy")
    assert np.array_equal(np.load(work / "sim.npy"), run)
    assert np.array_equal(np.load(work / "fw.npy"), run)
    # Nothing was written into the installed package or the working folder but the outputs.
    assert sorted(p.name for p in work.iterdir()) == ["fw.npy", "m.npz", "run.npy", "sim.npy",
                                                      "x.npy"]

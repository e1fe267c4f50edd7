"""Where bnnhw writes, and how: outputs checked before the work, written atomically.

Three rules, applied by every command (and by the library functions that write folders):

* **Check first.** An output path is checked (:func:`check_output_file`,
  :func:`check_output_folder`) before any long work: a folder where a file is wanted, a file
  in the way of a folder, a folder that cannot be written, fail at once with one line.
* **Atomic.** A file is written to a temporary file beside it and renamed onto it
  (:func:`atomic_write`, :func:`atomic_write_many`); a folder is built in a temporary sibling
  folder and swapped in (:class:`OutputFolder`). An error or an interruption (SIGINT,
  SIGTERM: :mod:`bnnhw.procs` turns both into an exception) removes the temporaries and
  leaves an existing output as it was.
* **Never someone else's folder.** ``-o DIR`` replaces ``DIR`` only when it is empty or a
  previous bnnhw output of the same kind whose marker file lists everything in it (the
  ``manifest.json`` of ``generate``, the ``firmware.json`` of ``firmware``, the
  ``compare.json`` of ``compare``). A folder holding
  anything else (a model, the user's files), the current folder or one of its parents, and
  symbolic links are refused.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

from .errors import InputError

__all__ = ["check_output_file", "check_output_folder", "atomic_write", "atomic_write_many",
           "OutputFolder", "FOLDER_KINDS", "folder_files", "write_marker"]

#: Entries of an existing output folder looked at before giving up (a huge folder is foreign).
MAX_ENTRIES = 100_000
#: The largest marker file read.
MAX_MARKER_BYTES = 16 << 20


def _nearest_existing(path):
    """The nearest existing ancestor of ``path`` (``path`` itself excluded) and the folders
    below it that do not exist yet (top first)."""
    missing = []
    parent = path.parent
    while not os.path.lexists(parent):
        missing.append(parent)
        if parent.parent == parent:
            break
        parent = parent.parent
    return parent, missing[::-1]


def _check_parent(path, where):
    parent, _ = _nearest_existing(path)
    if not parent.is_dir():
        raise InputError(f"{where}: its folder {str(path.parent)!r} is not a directory "
                         f"(a file is in the way)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{where}: cannot write to folder {str(parent)!r} (permission denied)")


def check_output_file(path, what="output"):
    """Check that ``path`` can be written as a file; return it as a :class:`~pathlib.Path`.

    Raises
    ------
    bnnhw.errors.InputError
        ``path`` is a folder or another non-regular file (a device, a FIFO), a file is in
        the way of its folder, or the folder cannot be written.
    """
    path = Path(path)
    where = f"{what} {str(path)!r}"
    if path.is_dir():
        raise InputError(f"{where} is a directory, not a file name")
    if os.path.lexists(path) and not path.is_symlink() and not path.is_file():
        raise InputError(f"{where} exists and is not a regular file")
    _check_parent(path, where)
    return path


def _remove_created(folders):
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            break


def atomic_write_many(items, what="output"):
    """Write several files all or nothing: ``items`` is ``[(path, write), ...]``.

    Every path is checked first, every ``write(tmp_path)`` writes a temporary file beside its
    path, and only when all succeeded are they renamed onto their paths. On any error (or
    interruption) the temporaries, and the folders made for them, are removed and no existing
    file is touched.
    """
    paths = [check_output_file(p, what) for p, _ in items]
    created, temps = [], []
    current = paths[0] if paths else None
    try:
        for path in paths:
            current = path
            _, missing = _nearest_existing(path)
            for folder in missing:
                folder.mkdir()
                created.append(folder)
            fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp",
                                       dir=path.parent)
            temps.append(tmp)
            os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        for (path, write), tmp in zip(items, temps):
            current = path
            write(tmp)
            # mkstemp creates 0600; give the file the permissions a plain open() would.
            os.chmod(tmp, 0o666 & ~umask)
        for path in paths:
            if path.is_dir():
                raise InputError(f"{what} {str(path)!r}: cannot replace it (a directory "
                                 f"appeared there)")
        for path, tmp in zip(paths, temps):
            current = path
            os.replace(tmp, path)
    except OSError as e:
        _cleanup(temps, created)
        raise InputError(f"{what} {str(current)!r}: cannot write it "
                         f"({e.strerror or e})") from None
    except BaseException:
        _cleanup(temps, created)
        raise


def _cleanup(temps, created):
    for tmp in temps:
        if tmp is not None and os.path.lexists(tmp):
            os.unlink(tmp)
    _remove_created(created)


def atomic_write(path, write, what="output"):
    """Call ``write(tmp_path)`` then rename onto ``path``; nothing is left behind on error.

    Parameters
    ----------
    path : str or os.PathLike
        The file to (re)place. Missing parent folders are created (and removed again on
        error).
    write : callable
        ``write(tmp_path)`` writes the whole file at ``tmp_path``, in the same folder.

    Raises
    ------
    bnnhw.errors.InputError
        When ``path`` cannot be a file: it is a folder, a parent is a file, or the folder
        cannot be written; the message names the path.
    """
    atomic_write_many([(path, write)], what)


# -- folders ----------------------------------------------------------------------------------

def _generate_owned(marker):
    return {marker.get("verilog"), marker.get("vectors")}


def _listed_owned(marker):
    files = marker.get("files")
    return set(files) if isinstance(files, list) else set()


def _compare_owned(marker):
    return {"compare.md", "compare.png"}


def _asic_owned(marker):
    return {"report.md"}


#: Kinds of output folders: ``{kind: (marker file, marker format, owned files of a marker)}``.
FOLDER_KINDS = {
    "generate": ("manifest.json", "bnnhw-manifest", _generate_owned),
    "firmware": ("firmware.json", "bnnhw-firmware", _listed_owned),
    "compare": ("compare.json", "bnnhw-compare", _compare_owned),
    "asic": ("report.json", "bnnhw-asic-report", _asic_owned),
}


def folder_files(folder):
    """Relative POSIX paths of everything below ``folder`` (files, links, folders), sorted."""
    out = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        rel = Path(root).relative_to(folder)
        for name in dirs + files:
            out.append((rel / name).as_posix())
            if len(out) > MAX_ENTRIES:
                return out
    return sorted(out)


def _marker(folder, kind):
    name, fmt, owned = FOLDER_KINDS[kind]
    path = folder / name
    try:
        if not path.is_file() or path.stat().st_size > MAX_MARKER_BYTES:
            return None
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("format") != fmt:
        return None
    files = {f for f in owned(data) if isinstance(f, str) and f and not f.startswith("/")
             and ".." not in Path(f).parts}
    return files | {name}


def check_output_folder(path, kind):
    """Check that ``path`` may be (re)placed by a ``kind`` output folder; return the Path.

    It may when it does not exist (its parent must be a writable folder or creatable), is
    empty, or is a previous output of ``kind`` holding nothing its marker does not list.

    Raises
    ------
    bnnhw.errors.InputError
        Naming the folder and why it is refused.
    """
    path = Path(path)
    where = f"output folder {str(path)!r}"
    if path.is_symlink():
        raise InputError(f"{where} is a symbolic link: give the folder itself")
    if path.exists() and not path.is_dir():
        raise InputError(f"output {str(path)!r} exists and is not a directory")
    resolved = path.resolve()
    try:
        cwd = Path.cwd().resolve()
    except OSError:
        cwd = None
    if cwd is not None and (resolved == cwd or resolved in cwd.parents):
        raise InputError(f"{where} is the current folder or holds it: give a new folder")
    _check_parent(path, where)
    if not path.is_dir():
        return path
    entries = folder_files(path)
    if not entries:
        return path
    marker_name, fmt, _ = FOLDER_KINDS[kind]
    owned = _marker(path, kind)
    if owned is None:
        raise InputError(f"{where} is not empty and is not a previous `bnnhw {kind}` output "
                         f"(no {marker_name} of format {fmt!r}): refusing to replace it; "
                         f"remove it or give a new folder")
    parents = {p.as_posix() for f in owned for p in Path(f).parents} - {"."}
    foreign = [e for e in entries if e not in owned and e not in parents]
    if foreign:
        raise InputError(f"{where} holds {foreign[0]!r}, which the previous `bnnhw {kind}` "
                         f"did not write: refusing to replace it; remove it or give a new "
                         f"folder")
    return path


class OutputFolder:
    """An output folder of ``kind`` built in a temporary sibling folder and swapped in.

    ``with OutputFolder(path, kind) as tmp:`` checks ``path`` at once
    (:func:`check_output_folder`), yields the temporary folder to write into, and when the
    block ends without error checks again and swaps the new folder in (an old output is
    removed only after the new one is in place). On an error or an interruption the
    temporary folder, and the parent folders made for it, are removed; ``path`` is untouched.

    Parameters
    ----------
    path : path-like
    kind : str
        A key of :data:`FOLDER_KINDS`; the block must write that kind's marker file.
    """

    def __init__(self, path, kind):
        self.path = check_output_folder(path, kind)
        self.kind = kind
        self.tmp = None
        self._created = []

    def __enter__(self):
        _, missing = _nearest_existing(self.path)
        try:
            for folder in missing:
                folder.mkdir()
                self._created.append(folder)
            self.tmp = Path(tempfile.mkdtemp(prefix="." + self.path.name + ".tmp.",
                                             dir=self.path.parent))
            # mkdtemp makes 0700; the output gets the permissions a plain mkdir would.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self.tmp, 0o777 & ~umask)
        except BaseException:
            _remove_created(self._created)
            raise
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self._commit()
        except BaseException:
            self._discard()
            raise
        if exc_type is not None:
            self._discard()
        return False

    def _discard(self):
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
        _remove_created(self._created)

    def _commit(self):
        marker = FOLDER_KINDS[self.kind][0]
        if not (self.tmp / marker).is_file():
            raise InputError(f"output folder {str(self.path)!r}: {marker} was not written")
        check_output_folder(self.path, self.kind)        # nothing changed meanwhile
        out = self.path
        if not out.exists():
            os.replace(self.tmp, out)
            return
        old = Path(tempfile.mkdtemp(prefix="." + out.name + ".old.", dir=out.parent))
        os.rmdir(old)
        os.replace(out, old)
        try:
            os.replace(self.tmp, out)
        except BaseException:
            os.replace(old, out)
            raise
        shutil.rmtree(old, ignore_errors=True)


def write_marker(folder, kind, data):
    """Write the marker file of a ``kind`` folder (strict JSON, sorted keys)."""
    name, fmt, _ = FOLDER_KINDS[kind]
    text = json.dumps({"format": fmt, **data}, indent=2, sort_keys=True, allow_nan=False)
    (Path(folder) / name).write_text(text + "\n")

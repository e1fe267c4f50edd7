"""Readers of untrusted array files: ``.npy``, ``.npz`` archives and IDX (optionally gzipped).

Each reader parses the header first and checks what it declares (dtype, shape, sizes) against
the file and against :mod:`bnnhw.limits` before allocating the array or inflating a byte, and
then reads exactly the declared number of bytes into that array. Nothing is ever unpickled
(object dtypes are refused), a zip member is never inflated beyond the size its directory
entry declares, and an IDX ``.gz`` is read as a stream, header first. Every error is one line
naming the file and what is wrong, raised as the caller's error class
(:class:`~bnnhw.errors.InputError` for data, :class:`~bnnhw.errors.ModelError` for models).
"""

import gzip
import math
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import BnnhwError, InputError
from ..limits import check_size, limit

__all__ = ["describe_content", "check_file", "read_npy", "NpzArchive", "read_idx"]

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
GZIP_MAGIC = b"\x1f\x8b"
#: The longest ``.npy`` header accepted (NumPy's own default limit).
MAX_NPY_HEADER = 10000
#: Members of one ``.npz`` archive.
MAX_MEMBERS = 100_000
#: The longest text entry (``<U`` dtype, in characters), e.g. a model header.
MAX_TEXT_CHARS = 16 << 20

#: Read errors of corrupt files (zip, deflate, gzip, the ``.npy`` header parser).
_CORRUPT = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError,
            NotImplementedError, RuntimeError, OverflowError, SyntaxError, KeyError, TypeError)


def describe_content(head):
    """What the first bytes of a file look like, for messages: ``"it is a text file"``..."""
    if not head:
        return "the file is empty"
    if head.startswith(NPY_MAGIC):
        return "it is a single .npy array"
    if head.startswith(ZIP_MAGICS):
        return "it is a zip archive"
    if head.startswith(GZIP_MAGIC):
        return "it is gzip-compressed data"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\t\r\n" for c in text):
        return "it is a text file"
    return f"it starts with the bytes {head[:8].hex(' ')}"


def _head(path, n=512):
    with open(path, "rb") as f:
        return f.read(n)


def check_file(path, what, error):
    """``path`` as a :class:`~pathlib.Path` if it is an existing regular file; otherwise raise
    ``error`` saying what it is (missing, a directory, a device or FIFO)."""
    path = Path(path)
    if not path.exists():
        raise error(f"{what} {str(path)!r} does not exist")
    if path.is_dir():
        raise error(f"{what} {str(path)!r} is a directory")
    if not path.is_file():
        raise error(f"{what} {str(path)!r} is not a regular file")
    return path


def _read_header(f, where, error):
    """``(shape, fortran_order, dtype)`` of the ``.npy`` stream ``f`` (at its start)."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(
                f, max_header_size=MAX_NPY_HEADER)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(
                f, max_header_size=MAX_NPY_HEADER)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:      # the archive, not the header
        raise error(f"{where} is corrupt ({e})") from None
    except _CORRUPT as e:
        raise error(f"{where} has no valid .npy header ({e})") from None
    if not isinstance(shape, tuple) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise error(f"{where}: .npy header has an invalid shape {shape!r}")
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise error(f"{where} holds {dtype} values: only plain numbers and text are read "
                    f"(never Python objects)")
    if dtype.kind not in "biufU":
        raise error(f"{where} holds {dtype} values, not numbers")
    if dtype.kind == "U" and dtype.itemsize // 4 > MAX_TEXT_CHARS:
        raise error(f"{where} holds text entries of {dtype.itemsize // 4:,} characters, "
                    f"more than the maximum {MAX_TEXT_CHARS:,}")
    return shape, fortran, dtype


def _read_array(f, shape, fortran, dtype, nbytes, where, error):
    """Read exactly ``nbytes`` from ``f`` into a new array (allocated once, never doubled)."""
    count = math.prod(shape)
    array = np.empty(count, dtype=dtype)
    if nbytes:
        buffer = memoryview(array.view(np.uint8).reshape(-1))
        done = 0
        try:
            while done < nbytes:
                n = f.readinto(buffer[done:])
                if not n:
                    break
                done += n
        except _CORRUPT as e:
            raise error(f"{where} is corrupt ({e})") from None
        if done < nbytes:
            raise error(f"{where} is truncated: its header declares {nbytes:,} data bytes, "
                        f"{done:,} are present")
    if not dtype.isnative:
        array = array.astype(dtype.newbyteorder("="))
    return array.reshape(shape, order="F" if fortran else "C")


def _declared(shape, dtype, where, error):
    nbytes = math.prod(shape) * dtype.itemsize            # Python ints: never wraps
    check_size("array_bytes", nbytes, f"{where}: array of shape {list(shape)} ({dtype})",
               error=error)
    return nbytes


def read_npy(path, what="input file", *, error=InputError):
    """Read one ``.npy`` array, checking its header against the file and the limits first.

    Parameters
    ----------
    path : path-like
    what : str
        Names the file in messages (``"input file"``, ``"labels file"``).
    error : type
        The exception class raised on a bad file.

    Returns
    -------
    numpy.ndarray
        Numbers (or text) only; never an object array.
    """
    path = check_file(path, what, error)
    where = f"{what} {str(path)!r}"
    head = _head(path, 512)
    if not head.startswith(NPY_MAGIC):
        raise error(f"{where} is not a readable .npy array ({describe_content(head)})")
    size = path.stat().st_size
    with open(path, "rb") as f:
        shape, fortran, dtype = _read_header(f, where, error)
        nbytes = _declared(shape, dtype, where, error)
        present = size - f.tell()
        if present != nbytes:
            state = "truncated" if present < nbytes else "longer than its header says"
            raise error(f"{where} is {state}: its header declares {nbytes:,} data bytes "
                        f"(shape {list(shape)}, {dtype}), the file holds {present:,}")
        return _read_array(f, shape, fortran, dtype, nbytes, where, error)


class NpzArchive:
    """An ``.npz`` archive opened for checked, lazy reading (see the module docstring).

    Opening checks the zip directory: only ``.npy`` members, stored or deflated, not
    encrypted, each at most ``BNNHW_MAX_ARRAY_BYTES`` and all together at most ``max_total``
    bytes uncompressed (default ``BNNHW_MAX_MODEL_BYTES``). :meth:`read` then reads one
    member, checking its ``.npy`` header against the size its directory entry declares.

    Parameters
    ----------
    path : path-like
    what : str
        Names the file in messages (``"model file"``).
    error : type
        The exception class raised on a bad file.
    max_total : int, optional
    """

    def __init__(self, path, what="model file", *, error=InputError, max_total=None):
        self.error = error
        self.path = path = check_file(path, what, error)
        self.where = where = f"{what} {str(path)!r}"
        head = _head(path, 512)
        if not head.startswith(ZIP_MAGICS):
            raise error(f"{where} is not a .npz archive ({describe_content(head)})")
        try:
            self._zip = zipfile.ZipFile(path)
            infos = self._zip.infolist()
        except _CORRUPT as e:
            raise error(f"{where} is not a readable .npz archive (truncated or corrupt: "
                        f"{e})") from None
        try:
            self._infos = self._check_directory(infos, max_total)
        except BaseException:
            self._zip.close()
            raise

    def _check_directory(self, infos, max_total):
        error, where = self.error, self.where
        if len(infos) > MAX_MEMBERS:
            raise error(f"{where} has {len(infos):,} members, more than {MAX_MEMBERS:,}")
        out = {}
        total = 0
        for info in infos:
            name = info.filename
            if not name.endswith(".npy") or info.is_dir():
                raise error(f"{where}: member {name!r} is not an .npy array")
            if info.flag_bits & 0x1:
                raise error(f"{where}: member {name!r} is encrypted")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise error(f"{where}: member {name!r} uses zip compression method "
                            f"{info.compress_type} (only stored and deflated are read)")
            key = name[:-len(".npy")]
            if key in out:
                raise error(f"{where}: member {name!r} appears twice")
            check_size("array_bytes", info.file_size, f"{where}: member {name!r}",
                       error=error)
            total += info.file_size
            out[key] = info
        top = limit("model_bytes") if max_total is None else max_total
        if total > top:
            raise error(f"{where} needs {total:,} bytes uncompressed, more than the maximum "
                        f"{top:,} (set $BNNHW_MAX_MODEL_BYTES to allow more)")
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._zip.close()

    @property
    def names(self):
        """The array names (member names without ``.npy``), in archive order."""
        return list(self._infos)

    def __contains__(self, name):
        return name in self._infos

    def read(self, name):
        """The array ``name``, read and checked (see the class docstring)."""
        info = self._infos[name]
        where = f"{self.where}: member {info.filename!r}"
        error = self.error
        try:
            with self._zip.open(info) as f:
                shape, fortran, dtype = _read_header(f, where, error)
                nbytes = _declared(shape, dtype, where, error)
                if f.tell() + nbytes != info.file_size:
                    raise error(f"{where} is corrupt: its header declares {nbytes:,} data "
                                f"bytes, its zip entry {info.file_size - f.tell():,}")
                array = _read_array(f, shape, fortran, dtype, nbytes, where, error)
                if f.read(1):
                    raise error(f"{where} is corrupt: data after the array")
        except BnnhwError:
            raise
        except _CORRUPT as e:
            raise error(f"{where} is corrupt ({e})") from None
        return array

    def read_all(self):
        """``{name: array}`` of every member."""
        return {name: self.read(name) for name in self._infos}


def read_idx(path, what="IDX file", *, error=InputError):
    """Read an unsigned-byte IDX file (gzipped when its name ends in ``.gz``), header first.

    The dimensions are checked against ``BNNHW_MAX_ARRAY_BYTES`` before the data is read; a
    ``.gz`` is inflated as a stream into the array, never beyond the size its header gives.
    """
    path = check_file(path, what, error)
    where = f"{what} {str(path)!r}"
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[:3] != b"\0\0\x08":
                raise error(f"{where} is not an unsigned-byte IDX file")
            ndim = magic[3]
            if not 1 <= ndim <= 8:
                raise error(f"{where}: IDX header declares {ndim} dimensions (1 to 8 are read)")
            raw = f.read(4 * ndim)
            if len(raw) < 4 * ndim:
                raise error(f"{where} is truncated inside its header")
            dims = [int.from_bytes(raw[4 * i:4 * i + 4], "big") for i in range(ndim)]
            nbytes = math.prod(dims)
            check_size("array_bytes", nbytes, f"{where}: IDX data of shape {dims}",
                       error=error)
            array = np.empty(nbytes, np.uint8)
            done = 0
            view = memoryview(array)
            while done < nbytes:
                n = f.readinto(view[done:])
                if not n:
                    break
                done += n
            if done < nbytes:
                raise error(f"{where} is truncated: header says {dims}, {done} data bytes "
                            f"present")
            if f.read(1):
                raise error(f"{where} holds more data than its header {dims} declares")
    except BnnhwError:
        raise
    except (gzip.BadGzipFile, zlib.error, EOFError, OSError) as e:
        raise error(f"{where} is unreadable ({e})") from None
    return array.reshape(dims)


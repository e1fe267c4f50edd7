"""The host side of the board's UART protocol (:mod:`bnnhw.boards.common`), over pyserial.

:class:`BoardClient` opens a serial port (a device such as ``/dev/ttyUSB1``, a pty, or any
pyserial URL such as ``loop://``), queries the board (model id, image size, classes, bytes per
score), refuses a board that answers for another model, then streams images and reads their
scores, each read bounded by a timeout. :class:`SoftwareBoard` is a model of the board in
software (the golden model behind the same protocol on a file descriptor, e.g. a pty's
master side), for testing the client and the command line without a board.
"""

import os
import threading
import time

import numpy as np

from bnnhw.errors import InputError, ModelError, ToolError
from bnnhw.model.packing import input_beats

from .common import CMD_IMAGE, CMD_QUERY, ID_BYTES, PROTOCOL_VERSION, id_message

__all__ = ["BoardClient", "SoftwareBoard", "parse_id", "image_bytes", "decode_scores"]


def parse_id(data):
    """The fields of a query answer (:func:`~bnnhw.boards.common.id_message`)."""
    if len(data) != ID_BYTES or data[:3] != b"BNN":
        raise ToolError(f"the board's answer to a query is not a bnnhw board's: {data[:16]!r}")
    return {"version": data[3], "model_id": data[4:12].hex(),
            "image_bytes": int.from_bytes(data[12:14], "little"), "classes": data[14],
            "score_bytes": data[15]}


def image_bytes(net, x, bytes_per_beat):
    """The raw bytes of every image of ``x`` in the order the board takes them
    (HWC raster order, as :func:`bnnhw.model.packing.input_beats`), ``[N, bytes]``."""
    from bnnhw.golden import check_input
    x = check_input(net, x)
    c, h, w = net.input_shape
    beats = -(-c * h * w // bytes_per_beat)
    return input_beats(x, bytes_per_beat, beats).reshape(x.shape[0], -1)


def decode_scores(data, classes, score_bytes):
    """Little-endian two's-complement scores, ``classes`` per image, as int64."""
    raw = np.frombuffer(bytes(data), np.uint8).reshape(-1, classes, score_bytes)
    out = np.zeros(raw.shape[:2], np.int64)
    for j in range(score_bytes):
        out |= raw[..., j].astype(np.int64) << (8 * j)
    sign = np.int64(1) << (8 * score_bytes - 1)
    return (out ^ sign) - sign


class BoardClient:
    """A connection to a bnnhw board (see the module docstring).

    Parameters
    ----------
    port : str
        Serial device or pyserial URL.
    baud : int
    timeout : float
        Seconds any one answer may take (the query answer, or one image's scores).
    """

    def __init__(self, port, *, baud=115200, timeout=5.0):
        import serial
        if not isinstance(timeout, (int, float)) or not timeout > 0:
            raise InputError(f"timeout must be a positive number of seconds, not {timeout!r}")
        self.port, self.timeout = port, float(timeout)
        try:
            self.serial = serial.serial_for_url(port, baudrate=baud, timeout=self.timeout)
        except (serial.SerialException, ValueError) as e:
            raise InputError(f"cannot open serial port {port!r}: {e}") from None
        self.serial.reset_input_buffer()

    def close(self):
        self.serial.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _read(self, n, what):
        data = bytearray()
        deadline = time.monotonic() + self.timeout
        while len(data) < n:
            chunk = self.serial.read(n - len(data))
            data += chunk
            if len(data) < n and time.monotonic() > deadline:
                raise ToolError(f"board on {self.port} did not answer {what} within "
                                f"{self.timeout:g} s (got {len(data)} of {n} bytes)")
        return bytes(data)

    def query(self):
        """The board's answer to a query, parsed (:func:`parse_id`)."""
        self.serial.write(bytes([CMD_QUERY]))
        self.serial.flush()
        return parse_id(self._read(ID_BYTES, "the query"))

    def check(self, net):
        """Query the board and refuse one that runs another model or protocol."""
        info = self.query()
        if info["version"] != PROTOCOL_VERSION:
            raise ToolError(f"board on {self.port} speaks protocol version {info['version']}, "
                            f"this client {PROTOCOL_VERSION}")
        want = net.fingerprint()
        if info["model_id"] != want:
            raise ModelError(f"board on {self.port} runs model {info['model_id']}, not "
                             f"{net.name!r} ({want}): build and program the board for this "
                             f"model")
        c, h, w = net.input_shape
        if info["image_bytes"] < c * h * w or info["classes"] != net.num_classes:
            raise ToolError(f"board on {self.port} takes {info['image_bytes']} bytes and "
                            f"answers {info['classes']} classes; {net.name!r} has "
                            f"{c * h * w} and {net.num_classes}")
        return info

    def run(self, net, x, *, progress=False):
        """Scores of the board for raw inputs ``x`` (int64 ``[N, classes]``)."""
        info = self.check(net)
        data = image_bytes(net, x, 1)
        if data.shape[1] < info["image_bytes"]:
            data = np.pad(data, ((0, 0), (0, info["image_bytes"] - data.shape[1])))
        per_image = info["classes"] * info["score_bytes"]
        out = []
        bar = None
        if progress:
            from rich.progress import Progress
            bar = Progress(transient=True)
            bar.start()
            task = bar.add_task(f"{net.name} on {self.port}", total=len(data))
        try:
            for i, img in enumerate(data):
                self.serial.write(bytes([CMD_IMAGE]) + img.tobytes())
                self.serial.flush()
                out.append(self._read(per_image, f"image {i}"))
                if bar:
                    bar.update(task, advance=1)
        finally:
            if bar:
                bar.stop()
        return decode_scores(b"".join(out), info["classes"], info["score_bytes"])


class SoftwareBoard:
    """The board in software: the golden model behind the UART protocol on ``fd``.

    Parameters
    ----------
    net : Network
        The model the board computes.
    fd : int
        A file descriptor to serve (the master side of a pty, one end of a socket pair).
    model_id : str or None
        The id it answers with (default the model's: give another to play a board that was
        programmed with another model).
    score_bytes : int or None
        Bytes per score (default: as the hardware's score width gives).
    """

    def __init__(self, net, fd, *, model_id=None, score_bytes=None):
        from bnnhw.plan.core import CorePlan
        self.net, self.fd = net, fd
        plan = CorePlan(net)
        c, h, w = net.input_shape
        self.image_bytes = c * h * w
        self.score_bytes = score_bytes or -(-plan.score_width // 8)
        self.message = id_message(model_id or net.fingerprint(), self.image_bytes,
                                  net.num_classes, self.score_bytes)
        self.images = 0
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self._stop = True

    def _serve(self):
        from bnnhw import golden
        buf = bytearray()
        c, h, w = self.net.input_shape
        while not self._stop:
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while buf:
                if buf[0] == CMD_QUERY:
                    del buf[0]
                    os.write(self.fd, self.message)
                elif buf[0] == CMD_IMAGE:
                    if len(buf) < 1 + self.image_bytes:
                        break
                    img = np.frombuffer(bytes(buf[1:1 + self.image_bytes]), np.uint8)
                    del buf[:1 + self.image_bytes]
                    x = img.reshape(1, h, w, c).transpose(0, 3, 1, 2)
                    scores = golden.forward(self.net, x)[0]
                    out = b"".join(int(s).to_bytes(self.score_bytes, "little", signed=True)
                                   for s in scores)
                    os.write(self.fd, out)
                    self.images += 1
                else:
                    del buf[0]

"""Shared pieces of the board targets: a UART, the framed protocol, the pin wrapper, builds.

The wrapper (:class:`UartNetwork`) is the only place that touches pins. Protocol on the UART
(8N1, ``baud`` default 115200), version 1 (:data:`PROTOCOL_VERSION`):

* host -> board ``b"Q"``: query. The board answers :data:`ID_BYTES` bytes:
  ``b"BNN"``, the protocol version (one byte), the model id (the 8 bytes of the model's
  16-hex-digit fingerprint), the image size in bytes (uint16 LE), the number of classes and
  the bytes per score (one byte each). The host checks it before sending images, so a board
  programmed with another model is caught (:mod:`bnnhw.boards.client`).
* host -> board ``b"I"`` then the image's raw bytes in HWC raster order (the core's
  ``i_stream`` order), exactly ``image bytes`` of them; board -> host: one little-endian
  two's-complement field of ``ceil(score_width / 8)`` bytes per class, in class order.
  Images may follow each other back to back (``I`` + bytes, ``I`` + bytes, ...).
* any other byte outside an image is ignored.

LEDs: the first LED toggles after each image's last score; the second lights while the input
FIFO holds bytes (an image is being received or waits for the core), or after an overflow.

:func:`build` makes a bitstream with amaranth-boards and YoWASP (no vendor tools) and returns
Fmax and utilisation from nextpnr's ``--report`` (the older entry point; ``bnnhw build`` runs
:func:`bnnhw.boards.bitstream.build_board` through the build flow).
"""

import json
import time
from importlib import resources
from pathlib import Path

from amaranth.hdl import Array, Cat, Const, Module, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from bnnhw.plan.params import check_int

__all__ = ["UartRx", "UartTx", "StreamBridge", "Framer", "IdResponder", "UartNetwork", "build",
           "DEFAULT_MODEL", "PROTOCOL_VERSION", "ID_BYTES", "id_message"]

#: Version of the UART protocol (the fourth byte of the query answer).
PROTOCOL_VERSION = 1
#: Length of the answer to a query.
ID_BYTES = 16
#: Command bytes.
CMD_QUERY, CMD_IMAGE = ord("Q"), ord("I")


def id_message(fingerprint, image_bytes, classes, score_bytes):
    """The board's answer to a query (see the module docstring), as bytes."""
    fp = bytes.fromhex(fingerprint)
    if len(fp) != 8:
        raise ValueError(f"model fingerprint must be 16 hex digits, not {fingerprint!r}")
    if not 0 < image_bytes < 1 << 16 or not 0 < classes < 256 or not 0 < score_bytes < 256:
        raise ValueError(f"image size {image_bytes}, {classes} classes or {score_bytes} bytes "
                         f"per score do not fit the query answer")
    return (b"BNN" + bytes([PROTOCOL_VERSION]) + fp + image_bytes.to_bytes(2, "little")
            + bytes([classes, score_bytes]))

DEFAULT_MODEL = Path(str(resources.files("bnnhw.examples") / "digits_bnn.npz"))


def _check_divisor(divisor):
    check_int("UART divisor", divisor, 2)


class UartRx(wiring.Component):
    """8N1 UART receiver; ``divisor`` clock cycles per bit.

    Members
    -------
    rx : In(1)
        The (asynchronous) line; synchronised here.
    data : Out(8)
    valid : Out(1)
        One-cycle strobe with ``data`` after a stop bit read as 1 (framing errors are dropped).
    """

    def __init__(self, *, divisor):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__({"rx": In(1, init=1), "data": Out(8), "valid": Out(1)})

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, rx, init=1)
        timer = Signal(range(self.divisor * 3 // 2 + 1))
        bit = Signal(range(10))
        shift = Signal(8)
        m.d.sync += self.valid.eq(0)
        with m.FSM():
            with m.State("idle"):
                with m.If(~rx):
                    # Sample in the middle of each bit: 1.5 bit times to the first data bit.
                    m.d.sync += [timer.eq(self.divisor * 3 // 2 - 1), bit.eq(0)]
                    m.next = "data"
            with m.State("data"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(bit == 8):
                    with m.If(rx):
                        m.d.sync += [self.data.eq(shift), self.valid.eq(1)]
                    m.next = "idle"
                with m.Else():
                    m.d.sync += [shift.eq(Cat(shift[1:], rx)), bit.eq(bit + 1),
                                 timer.eq(self.divisor - 1)]
        return m


class UartTx(wiring.Component):
    """8N1 UART transmitter; ``divisor`` clock cycles per bit.

    Members
    -------
    data : In(8)
    valid : In(1)
    ready : Out(1)
        A byte is taken when ``valid & ready``.
    tx : Out(1)
    """

    def __init__(self, *, divisor):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__({"data": In(8), "valid": In(1), "ready": Out(1), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divisor))
        shift = Signal(10, init=0x3FF)
        left = Signal(range(11))
        m.d.comb += [self.ready.eq(left == 0), self.tx.eq(shift[0])]
        with m.If(left == 0):
            with m.If(self.valid):
                m.d.sync += [shift.eq(Cat(0, self.data, 1)), left.eq(10),
                             timer.eq(self.divisor - 1)]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Else():
            m.d.sync += [shift.eq(Cat(shift[1:], 1)), left.eq(left - 1),
                         timer.eq(self.divisor - 1)]
        return m


class StreamBridge(wiring.Component):
    """Bytes in, bytes out around a network core (no pins; :class:`UartNetwork` adds them).

    Input bytes go through a FIFO of ``fifo_depth`` bytes and are packed into the core's
    ``i_stream`` beats (byte ``j`` of a beat at bits ``[8j, 8j+8)``); each score beat leaves
    as ``score_bytes`` little-endian bytes (sign-extended).

    Members
    -------
    in_data : In(8), in_valid : In(1)
        One byte per strobe (no backpressure: a UART cannot wait); the FIFO absorbs the time
        the core stalls its input.
    out_data : Out(8), out_valid : Out(1), out_ready : In(1)
    image_done : Out(1)
        One-cycle strobe when the last byte of an image's last score is taken.
    busy : Out(1)
        The input FIFO is not empty.
    overflow : Out(1)
        Sticky: a byte arrived while the FIFO was full (it was lost).
    """

    def __init__(self, *, core, fifo_depth=64):
        self.core = core
        self.beat_bytes = core.i_stream.payload.shape().width // 8
        self.score_width = core.score_width
        self.score_bytes = -(-self.score_width // 8)
        self.fifo_depth = fifo_depth
        super().__init__({"in_data": In(8), "in_valid": In(1),
                          "out_data": Out(8), "out_valid": Out(1), "out_ready": In(1),
                          "image_done": Out(1), "busy": Out(1), "overflow": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        m.submodules.fifo = q = fifo.SyncFIFOBuffered(width=8, depth=self.fifo_depth)
        m.d.comb += [q.w_data.eq(self.in_data), q.w_en.eq(self.in_valid),
                     self.busy.eq(q.r_rdy)]
        with m.If(self.in_valid & ~q.w_rdy):
            m.d.sync += self.overflow.eq(1)

        # Pack bytes into beats; hold the beat while the core is not ready.
        B = self.beat_bytes
        beat = Signal(8 * B)
        count = Signal(range(B + 1))
        m.d.comb += [core.i_stream.payload.eq(beat), core.i_stream.valid.eq(count == B),
                     q.r_en.eq(count != B)]
        with m.If(core.i_stream.valid & core.i_stream.ready):
            m.d.sync += count.eq(0)
        with m.Elif(q.r_rdy & (count != B)):
            m.d.sync += [beat.eq(Cat(beat[8:], q.r_data) if B > 1 else q.r_data),
                         count.eq(count + 1)]

        # Score beats to bytes, little-endian, sign-extended to whole bytes.
        nb = self.score_bytes
        word = Signal(8 * nb)
        last = Signal()
        left = Signal(range(nb + 1))
        score = core.o_stream.payload.score
        m.d.comb += [core.o_stream.ready.eq(left == 0), self.out_data.eq(word[:8]),
                     self.out_valid.eq(left != 0)]
        with m.If(core.o_stream.valid & core.o_stream.ready):
            m.d.sync += [word.eq(score.as_signed()), left.eq(nb),
                         last.eq(core.o_stream.payload.last)]
        with m.If(self.out_valid & self.out_ready):
            m.d.sync += [word.eq(word >> 8), left.eq(left - 1)]
            m.d.comb += self.image_done.eq(last & (left == 1))
        return m


class Framer(wiring.Component):
    """The host -> board framing: ``Q`` queries, ``I`` + ``image_bytes`` bytes of an image.

    Members
    -------
    in_data : In(8), in_valid : In(1)
        Bytes from the UART.
    out_data : Out(8), out_valid : Out(1)
        The image bytes only (to :class:`StreamBridge`).
    query : Out(1)
        One-cycle strobe on a ``Q`` outside an image.
    """

    def __init__(self, *, image_bytes):
        check_int("Image size", image_bytes, 1)
        self.image_bytes = image_bytes
        super().__init__({"in_data": In(8), "in_valid": In(1), "out_data": Out(8),
                          "out_valid": Out(1), "query": Out(1)})

    def elaborate(self, platform):
        m = Module()
        left = Signal(range(self.image_bytes + 1))
        m.d.comb += self.out_data.eq(self.in_data)
        with m.If(self.in_valid):
            with m.If(left != 0):
                m.d.comb += self.out_valid.eq(1)
                m.d.sync += left.eq(left - 1)
            with m.Elif(self.in_data == CMD_IMAGE):
                m.d.sync += left.eq(self.image_bytes)
            with m.Elif(self.in_data == CMD_QUERY):
                m.d.comb += self.query.eq(1)
        return m


class IdResponder(wiring.Component):
    """Sends the query answer (:func:`id_message`) byte by byte after ``query``.

    Members
    -------
    query : In(1)
    data : Out(8), valid : Out(1), ready : In(1)
    busy : Out(1)
        An answer is being sent (the score bytes wait meanwhile).
    """

    def __init__(self, *, message):
        self.message = bytes(message)
        super().__init__({"query": In(1), "data": Out(8), "valid": Out(1), "ready": In(1),
                          "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        n = len(self.message)
        idx = Signal(range(n + 1), init=n)
        rom = Array(Const(b, 8) for b in self.message)
        m.d.comb += [self.busy.eq(idx != n), self.valid.eq(idx != n),
                     self.data.eq(rom[idx[:max(1, (n - 1).bit_length())]])]
        with m.If(self.valid & self.ready):
            m.d.sync += idx.eq(idx + 1)
        with m.If(self.query & (idx == n)):
            m.d.sync += idx.eq(0)
        return m


class UartNetwork(wiring.Component):
    """The pin wrapper: a network core behind a UART, with two status LEDs.

    Parameters
    ----------
    core : bnnhw.hw.network.NetworkCore
    clock_hz : float
        The board clock the UART divisor is computed for.
    baud : int
    model_id : str or None
        The model's fingerprint (16 hex digits) in the query answer; default the core's.
    pins : bool
        Request the UART and LED pins from the platform (default: when there is one). With
        ``pins=False`` the UART lines are the members ``rx`` / ``tx`` (simulation).

    Members (``pins=False``)
    ------------------------
    rx : In(1)
    tx : Out(1)
    """

    def __init__(self, *, core, clock_hz, baud=115200, model_id=None, pins=True):
        self.core, self.clock_hz, self.baud = core, clock_hz, baud
        self.divisor = round(clock_hz / baud)
        self.model_id = model_id if model_id is not None else core.net.fingerprint()
        self.image_bytes = core.input_beats_per_image * core.input_bytes_per_beat
        self.score_bytes = -(-core.score_width // 8)
        self.message = id_message(self.model_id, self.image_bytes, core.num_classes,
                                  self.score_bytes)
        self.pins = pins
        super().__init__({} if pins else {"rx": In(1, init=1), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.bridge = bridge = StreamBridge(core=self.core)
        m.submodules.rx = rx = UartRx(divisor=self.divisor)
        m.submodules.tx = tx = UartTx(divisor=self.divisor)
        m.submodules.framer = framer = Framer(image_bytes=self.image_bytes)
        m.submodules.ident = ident = IdResponder(message=self.message)
        m.d.comb += [framer.in_data.eq(rx.data), framer.in_valid.eq(rx.valid),
                     bridge.in_data.eq(framer.out_data), bridge.in_valid.eq(framer.out_valid),
                     ident.query.eq(framer.query)]
        # The query answer goes first; score bytes wait until it is out.
        with m.If(ident.busy):
            m.d.comb += [tx.data.eq(ident.data), tx.valid.eq(ident.valid),
                         ident.ready.eq(tx.ready)]
        with m.Else():
            m.d.comb += [tx.data.eq(bridge.out_data), tx.valid.eq(bridge.out_valid),
                         bridge.out_ready.eq(tx.ready)]
        if not self.pins:
            m.d.comb += [rx.rx.eq(self.rx), self.tx.eq(tx.tx)]
        elif platform is not None:
            uart = platform.request("uart", 0)
            m.d.comb += [rx.rx.eq(uart.rx.i), uart.tx.o.eq(tx.tx)]
            led0, led1 = platform.request("led", 0), platform.request("led", 1)
            toggle = Signal()
            with m.If(bridge.image_done):
                m.d.sync += toggle.eq(~toggle)
            m.d.comb += [led0.o.eq(toggle), led1.o.eq(bridge.busy | bridge.overflow)]
        return m


def build(board, model=None, out_dir=None, *, target_mhz=None, folding=None, seed=1):
    """Build a bitstream for ``board`` with the network ``model`` behind a UART.

    Parameters
    ----------
    board : str
        A name in :data:`bnnhw.boards.BOARDS` (``"icebreaker"``, ``"ulx3s"``).
    model : path-like, Network or None
        Default: the example ``bnnhw/examples/digits_bnn.npz``.
    out_dir : path-like or None
        Build folder (default ``build/boards/<board>``).
    target_mhz : float or None
        Clock constraint for place and route, above the board clock so that nextpnr reports
        the design's Fmax (``--timing-allow-fail``: a missed target does not fail the build).
    folding : dict or None
        Passed to :class:`~bnnhw.hw.network.NetworkCore`.

    Returns
    -------
    dict
        ``{"board", "model", "fmax_mhz", "fmax_by_clock", "target_mhz", "board_clock_mhz",
        "utilization", "cycles_per_image", "images_per_second_at_board_clock", "seconds",
        "files"}``.
    """
    from . import BOARDS
    import bnnhw
    from bnnhw.gen.resources import nextpnr_report
    from bnnhw.hw.network import NetworkCore
    from bnnhw.tools import yowasp_env
    if board not in BOARDS:
        raise ValueError(f"board must be one of {', '.join(BOARDS)}, not {board!r}")
    spec = BOARDS[board]
    if model is None:
        model = DEFAULT_MODEL
    net = model if isinstance(model, bnnhw.Network) else bnnhw.load_model(model)
    out_dir = Path(out_dir) if out_dir is not None else (
        Path(__file__).resolve().parents[1] / "build" / "boards" / board)
    platform = spec["platform"]()
    clock_hz = platform.default_clk_frequency
    target = target_mhz or spec["target_mhz"]
    core = NetworkCore(net=net, folding=folding)
    top = UartNetwork(core=core, clock_hz=clock_hz)
    overrides = {"nextpnr_opts": f"--timing-allow-fail --seed {seed} --report report.json"}
    overrides.update(spec["constraint"](target))
    start = time.monotonic()
    with yowasp_env():
        platform.build(top, name="top", build_dir=str(out_dir), do_program=False, **overrides)
    report = nextpnr_report(json.loads((out_dir / "report.json").read_text()))
    fmax, util = report["fmax_mhz"], report["utilization"]
    if not fmax:
        raise RuntimeError(f"nextpnr reported no clock in {out_dir / 'report.json'}")
    desc = core.describe()
    return {"board": board, "model": net.name, "fmax_mhz": min(fmax.values()),
            "fmax_by_clock": fmax, "target_mhz": target, "board_clock_mhz": clock_hz / 1e6,
            "utilization": util, "cycles_per_image": desc["cycles_per_image"],
            "images_per_second_at_board_clock": round(clock_hz / desc["cycles_per_image"], 1),
            "seconds": round(time.monotonic() - start, 1),
            "files": {"bitstream": str(out_dir / spec["bitstream"]),
                      "report": str(out_dir / "report.json")}}


def main(board, argv=None):
    """``python -m bnnhw.boards.<board> [--model M] [--out DIR] [--target-mhz F]``."""
    import argparse
    p = argparse.ArgumentParser(prog=f"python -m bnnhw.boards.{board}",
                                description=f"Build the {board} bitstream (YoWASP) and print "
                                            f"Fmax and utilisation as JSON.")
    p.add_argument("--model", default=None, help=f"model file (default {DEFAULT_MODEL.name})")
    p.add_argument("--out", default=None, help="build folder (default build/boards/<board>)")
    p.add_argument("--target-mhz", type=float, default=None)
    args = p.parse_args(argv)
    result = build(board, args.model, args.out, target_mhz=args.target_mhz)
    print(json.dumps(result, indent=1, sort_keys=True))
    return result

"""cocotb bench of a whole board top (UartNetwork, pins=False): UART in, UART out.

Driven by ``tests/sim/test_board_top.py``: the spec file named by ``BNNHW_BOARD_SPEC`` holds
the images (bytes in the board's order), the expected query answer and the golden scores;
the bench sends ``Q``, checks the answer, sends every image as ``I`` + bytes through a UART
model (cocotbext-uart) and compares each image's scores with the golden ones. Results go to
``results`` in the spec (JSON), so that a failure is read, never lost.
"""

import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles
from cocotbext.uart import UartSink, UartSource


async def read_bytes(sink, n, timeout_cycles, clk):
    data = bytearray()
    waited = 0
    while len(data) < n:
        while len(data) < n and not sink.empty():
            data += sink.read_nowait(1)
        if len(data) < n:
            await ClockCycles(clk, 64)
            waited += 64
            if waited > timeout_cycles:
                raise AssertionError(f"timeout: got {len(data)} of {n} bytes")
    return bytes(data)


@cocotb.test()
async def board_top(dut):
    spec = json.loads(open(os.environ["BNNHW_BOARD_SPEC"]).read())
    period = spec["clock_ns"]
    cocotb.start_soon(Clock(dut.clk, period, unit="ns").start())
    dut.rx.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    src = UartSource(dut.rx, baud=spec["baud"], bits=8, stop_bits=1)
    sink = UartSink(dut.tx, baud=spec["baud"], bits=8, stop_bits=1)
    results = {"id": None, "scores": [], "errors": []}
    timeout = spec["timeout_cycles"]
    try:
        await src.write(b"Q")
        results["id"] = (await read_bytes(sink, len(spec["id"]) // 2, timeout, dut.clk)).hex()
        n = spec["classes"] * spec["score_bytes"]
        for img in spec["images"]:
            await src.write(b"I" + bytes(img))
            data = await read_bytes(sink, n, timeout, dut.clk)
            sb = spec["score_bytes"]
            results["scores"].append([int.from_bytes(data[i:i + sb], "little", signed=True)
                                      for i in range(0, n, sb)])
    except AssertionError as e:
        results["errors"].append(str(e))
    with open(spec["results"], "w") as f:
        json.dump(results, f)
    assert not results["errors"], results["errors"]

#!/usr/bin/env python3
"""A pymodbus TCP server: the independent peer for twin's Modbus decoding.

Usage: pymodbus_server.py PORT   (0 = pick a free port)

Binds 127.0.0.1, prints the port it listens on as one line on stdout, then
serves until killed. The register map covers every data type twin decodes in
every byte/word order; tests/configs/pymodbus-interop.toml maps it to tags
and tests/it/interop_pymodbus.rs asserts the values twin reports.

The register words are computed here from the values with `struct`, on byte
strings, and not the way twin's codec does it (twin swaps 16-bit words), so
the two implementations are independent: where they agree, the convention
is implemented twice.

Conventions (the Modbus/PLC ones, as documented in twin's config):
  ABCD  big-endian bytes, high word first (the Modbus default)
  DCBA  fully little-endian (bytes reversed)
  BADC  high word first, bytes swapped within each word
  CDAB  low word first, bytes within each word big-endian ("word swap")
  16-bit types honour only the byte swap (DCBA/BADC); strings carry two
  Latin-1 characters per register, the first in the high byte, and
  DCBA/BADC swap the two; bit numbers in a register count from the least
  significant bit of the (byte-swap-undone) register value.
"""

import argparse
import asyncio
import struct
import sys

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

ORDERS = ("ABCD", "DCBA", "BADC", "CDAB")
STRUCT = {
    "u16": "H",
    "i16": "h",
    "u32": "I",
    "i32": "i",
    "f32": "f",
    "u64": "Q",
    "i64": "q",
    "f64": "d",
}
SWAPS_BYTES = ("DCBA", "BADC")


def pairs(b: bytes) -> list[bytes]:
    return [b[i : i + 2] for i in range(0, len(b), 2)]


def to_wire(big_endian: bytes, order: str) -> bytes:
    """The bytes as they travel, for the big-endian bytes of a value."""
    if len(big_endian) == 2:
        return big_endian[::-1] if order in SWAPS_BYTES else big_endian
    if order == "ABCD":
        return big_endian
    if order == "DCBA":
        return big_endian[::-1]
    if order == "BADC":
        return b"".join(p[::-1] for p in pairs(big_endian))
    if order == "CDAB":
        return b"".join(reversed(pairs(big_endian)))
    raise ValueError(order)


def words(wire: bytes) -> list[int]:
    return list(struct.unpack(f">{len(wire) // 2}H", wire))


def num(ty: str, order: str, value) -> list[int]:
    return words(to_wire(struct.pack(">" + STRUCT[ty], value), order))


def text(order: str, s: str, length: int, pad: bytes = b"\0") -> list[int]:
    b = s.encode("latin-1")
    assert len(b) <= 2 * length, s
    b = b.ljust(2 * length, pad)
    if order in SWAPS_BYTES:
        b = b"".join(p[::-1] for p in pairs(b))
    return words(b)


# --- The plant -------------------------------------------------------------
# Each order k has a block of holding registers at 100 * k:
#   +0 u16  +1 i16  +2 u32  +4 i32  +6 f32  +8 u64  +12 i64  +16 f64
#   +20 string (4 registers)  +24 bool register  +25 bit register
F32 = (-1234.5678, 98765.4321, -0.00012345678, 6.0221408e23)
F64 = (-1234.5678, 6.02214076e23, -2.718281828459045e-300, 1.0 / 3.0)
STRINGS = ("LOT-42", "LOT-42A", "ABCDEFGH", "X")
# Bits 15, 12 and 3 set; their byte-swap partners 7, 4 and 11 clear.
BITS_WORD = 0x9008


def unit1() -> SimDevice:
    hr: dict[int, int] = {}
    ir: dict[int, int] = {}

    def put(table: dict[int, int], address: int, regs: list[int]) -> None:
        for i, w in enumerate(regs):
            assert address + i not in table, f"overlap at {address + i}"
            table[address + i] = w

    for k, o in enumerate(ORDERS):
        base = 100 * k
        put(hr, base + 0, num("u16", o, 51234 + k))
        put(hr, base + 1, num("i16", o, -12345 - k))
        put(hr, base + 2, num("u32", o, 0xDEADBEEF - k))
        put(hr, base + 4, num("i32", o, -0x12345678 - k))
        put(hr, base + 6, num("f32", o, F32[k]))
        put(hr, base + 8, num("u64", o, 0x0012_3456_789A_BCDE + k))
        put(hr, base + 12, num("i64", o, -0x0012_3456_789A_BCDE - k))
        put(hr, base + 16, num("f64", o, F64[k]))
        put(hr, base + 20, text(o, STRINGS[k], 4))
        put(hr, base + 24, num("u16", o, 0x0100))
        put(hr, base + 25, num("u16", o, BITS_WORD))

    # Sentinels and a zero status word.
    put(hr, 1000, num("u16", "ABCD", 0xFFFF))  # invalid = [65535]
    put(hr, 1001, num("u16", "ABCD", 0xFFFE))  # invalid = [65535], still good
    put(hr, 1002, num("u16", "ABCD", 0))  # bool register, false

    # Input registers: the other table, mixed orders, scaling, text.
    put(ir, 0, num("f32", "CDAB", 120.189))
    put(ir, 2, num("u32", "DCBA", 4_000_000_000))
    put(ir, 4, num("i16", "BADC", -32768))  # invalid = [-32768]
    put(ir, 5, num("u16", "ABCD", 538))  # scale 0.1 -> 53.8
    put(ir, 6, num("i32", "ABCD", -123456))  # scale 0.001 -> -123.456
    put(ir, 8, num("i16", "CDAB", -7))  # scale 0.01 -> -0.07
    put(ir, 9, num("f32", "ABCD", 1.5))  # scale 4, offset -0.5 -> 5.5
    put(ir, 11, num("u16", "DCBA", 250))  # scale 2.5, offset 1 -> 626
    put(ir, 12, text("ABCD", "RECIPE-9", 10, pad=b" "))  # space padded
    put(ir, 22, text("DCBA", "MÜLLER°", 4))  # Latin-1, odd length
    put(ir, 26, num("u16", "BADC", 0x0001))  # bit 0 true, bit 8 false
    put(ir, 27, num("u64", "DCBA", 123_456_789_012))  # scale 0.001
    put(ir, 31, num("f64", "CDAB", -0.0))  # negative zero

    return SimDevice(
        id=1,
        simdata=(
            [SimData(0, values=list(COILS), datatype=DataType.BITS)],
            [
                SimData(0, values=list(DISCRETES), datatype=DataType.BITS),
                SimData(1000, values=[True], datatype=DataType.BITS),
            ],
            runs(hr),
            runs(ir),
        ),
    )


# Coils 0..18 and discrete inputs 0..18: three bytes on the wire, so the
# bit packing (LSB first, byte by byte) is exercised past a byte boundary.
COILS = [bool(int(c)) for c in "1011000101101000101"]
DISCRETES = [not c for c in COILS]


def unit2() -> SimDevice:
    """A second device behind the same address (a gateway), unit id 2."""
    return SimDevice(
        id=2,
        simdata=(
            [SimData(0, values=[False, True], datatype=DataType.BITS)],
            [SimData(0, values=[True], datatype=DataType.BITS)],
            runs({0: 4242, **dict(enumerate(num("f32", "CDAB", 21.5), start=1))}),
            runs(dict(enumerate(num("i16", "ABCD", -1)))),
        ),
    )


def runs(table: dict[int, int]) -> list[SimData]:
    """Contiguous runs of registers; unmapped addresses answer with an
    exception (illegal data address), as on a real PLC."""
    out: list[SimData] = []
    start = prev = None
    vals: list[int] = []
    for a in sorted(table):
        if prev is not None and a != prev + 1:
            out.append(SimData(start, values=vals, datatype=DataType.REGISTERS))
            vals = []
            start = None
        if start is None:
            start = a
        vals.append(table[a])
        prev = a
    if vals:
        out.append(SimData(start, values=vals, datatype=DataType.REGISTERS))
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("port", type=int, help="TCP port on 127.0.0.1; 0 picks a free one")
    args = ap.parse_args()
    server = ModbusTcpServer([unit1(), unit2()], address=("127.0.0.1", args.port))
    await server.serve_forever(background=True)
    port = server.transport.sockets[0].getsockname()[1]
    print(port, flush=True)
    await server.serving


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)

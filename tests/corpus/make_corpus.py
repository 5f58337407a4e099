"""Generate the malformed-input corpus in this directory: ``python tests/corpus/make_corpus.py``.

Each case is a few bytes to a few KB. gzip cases use hand-built stored-block members
(``reference.gzip_stored``) so that the files come out byte-for-byte the same with any zlib build.
``CASES`` also records what read_idx must raise for each file; tests/test_malformed.py checks both
the files (they must match this script) and read_idx's behaviour on them.
"""

from __future__ import annotations

import random
import struct
import sys
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import reference as ref  # noqa: E402

M = 0xFFFFFFFF  # the largest IDX dimension


class Case(NamedTuple):
    name: str
    data: bytes
    error: str  # the fastidx exception class read_idx must raise
    facts: tuple[str, ...]  # substrings the error message must contain (besides the source name)
    why: str  # what is wrong with the file (the README line)
    bug: str | None = None  # set when fastidx currently gets this case wrong (test is xfail)
    stream_facts: tuple[str, ...] | None = None  # facts instead, from a non-seekable stream


def _u8(shape, fill=0x5A):
    count = 1
    for d in shape:
        count *= d
    return ref.idx_header(0x08, shape) + bytes([fill]) * count


def _random(n, seed):
    return bytes(random.Random(seed).randrange(256) for _ in range(n))


def cases() -> list[Case]:
    valid = _u8((2, 3, 4))
    valid_gz = ref.gzip_stored(valid)
    truncated = _u8((10, 28, 28))[: 16 + 5000]
    lying_isize = bytearray(ref.gzip_stored(_u8((3000, 3000))[: 16 + 10_000]))
    lying_isize[-4:] = struct.pack("<I", (16 + 9_000_000) % 2**32)
    random_bytes = _random(1024, seed=1)
    assert random_bytes[:2] not in (b"\x00\x00", b"\x1f\x8b")
    return [
        Case("empty.idx", b"", "IDXHeaderError", ("empty",), "zero bytes"),
        Case("short-header-1.idx", b"\x00", "IDXHeaderError", ("ends after 1 bytes",),
             "1 byte: the 4-byte magic number is cut short"),
        Case("short-header-3.idx", b"\x00\x00\x08", "IDXHeaderError", ("ends after 3 bytes",),
             "3 bytes: the magic number lacks its ndim byte"),
        Case("short-header-2.idx.gz", ref.gzip_stored(b"\x00\x00"), "IDXHeaderError",
             ("ends after 2 bytes",), "a valid gzip stream that decodes to only 2 bytes"),
        Case("bad-magic.idx", b"\x12\x34" + valid[2:], "IDXHeaderError",
             ("not an IDX file", "1234"), "starts with 12 34 instead of 00 00"),
        Case("bad-magic.idx.gz", ref.gzip_stored(b"PK\x03\x04" + valid[4:]), "IDXHeaderError",
             ("not an IDX file",), "gzip around a file that starts with PK (a zip), not 00 00"),
        Case("unknown-type.idx", b"\x00\x00\x0a\x01\x00\x00\x00\x02ab", "IDXHeaderError",
             ("0x0A",), "type code 0x0A is not an IDX type"),
        Case("zero-ndim.idx", b"\x00\x00\x08\x00abcd", "IDXHeaderError", ("0 dimensions",),
             "declares 0 dimensions"),
        Case("absurd-ndim.idx", b"\x00\x00\x08\xc8" + b"\x00\x00\x00\x01" * 200 + b"x",
             "IDXHeaderError", ("200 dimensions",), "declares 200 dimensions"),
        Case("dims-cut-short.idx", b"\x00\x00\x08\x03" + b"\x00\x00\x00\x0a\x00\x00",
             "IDXHeaderError", ("3 dimensions", "after 6"),
             "declares 3 dimensions (12 bytes) but only 6 bytes of them follow"),
        Case("truncated-payload.idx", truncated, "IDXTruncatedError",
             ("header declares 10x28x28 uint8 = 7840 bytes", "ends after 5000"),
             "declares 10x28x28 uint8 (7840 bytes) but holds 5000"),
        Case("truncated-payload.idx.gz", ref.gzip_stored(truncated), "IDXTruncatedError",
             ("header declares 10x28x28 uint8 = 7840 bytes", "ends after 5000"),
             "an intact gzip stream around the same truncated IDX data"),
        Case("truncated-int16.idx", ref.idx_header(0x0B, (3, 5)) + bytes(29), "IDXTruncatedError",
             ("header declares 3x5 int16 = 30 bytes", "ends after 29"),
             "int16 data one byte short (half a value)"),
        Case("trailing-bytes.idx", _u8((2, 3)) + b"xyz", "IDXTrailingDataError",
             ("2x3 uint8 = 6 bytes", "3 more bytes"), "3 bytes after the declared payload"),
        Case("trailing-bytes.idx.gz", ref.gzip_stored(_u8((2, 3)) + b"xyz"), "IDXTrailingDataError",
             ("after the payload",), "gzip whose decoded data has 3 bytes after the payload"),
        Case("truncated-gzip.idx.gz", valid_gz[:20], "GzipError", ("truncated",),
             "gzip stream cut inside the deflate data"),
        Case("truncated-gzip-trailer.idx.gz", valid_gz[:-3], "GzipError", ("truncated",),
             "gzip stream cut inside its 8-byte CRC/ISIZE trailer"),
        Case("gzip-magic-only.gz", b"\x1f\x8b", "GzipError", ("truncated",),
             "the 2-byte gzip magic and nothing else"),
        Case("bad-crc.idx.gz", ref.corrupt_crc(valid_gz), "GzipError", ("CRC",),
             "one bit of the gzip trailer CRC-32 flipped"),
        Case("bad-isize.idx.gz", ref.corrupt_isize(valid_gz), "GzipError", ("ISIZE",),
             "gzip trailer ISIZE off by one"),
        Case("junk-after-gzip.idx.gz", valid_gz + b"junk", "GzipError",
             ("junk after the gzip stream",), "the text 'junk' after a complete gzip stream"),
        Case("bad-gzip-method.gz", b"\x1f\x8b\x07" + valid_gz[3:], "GzipError",
             ("compression method",), "gzip header with compression method 7 (only 8 exists)"),
        Case("random-bytes.bin", random_bytes, "IDXHeaderError", ("not an IDX file",),
             "1024 random bytes (seeded)"),
        Case("random-after-gzip-magic.gz", b"\x1f\x8b" + random_bytes[:300], "GzipError", (),
             "the gzip magic followed by 300 random bytes"),
        Case("lying-header.idx", (ref.idx_header(0x08, (M, M)) + bytes(100))[:100],
             "IDXTruncatedError",
             ("4294967295x4294967295 uint8 = 18446744065119617025 bytes", "ends after 88"),
             "100 bytes that declare 4294967295x4294967295 uint8 (16 EiB)"),
        Case("lying-header.idx.gz", ref.gzip_stored(ref.idx_header(0x08, (M, M)) + bytes(80)),
             "IDXTruncatedError",
             ("4294967295x4294967295 uint8 = 18446744065119617025 bytes", "cannot decode"),
             "a gzip stream of a few dozen bytes whose IDX header declares 16 EiB",
             # (a stream's size is unknown: it is decoded until it ends, in growing blocks)
             stream_facts=("4294967295x4294967295 uint8 = 18446744065119617025 bytes",
                           "ends after 80")),
        Case("lying-isize.idx.gz", bytes(lying_isize), "GzipError", ("ISIZE",),
             "declares 3000x3000 uint8 (9 MB) but holds 10000 bytes; the gzip ISIZE is forged "
             "to agree with the header"),
        Case("zero-and-huge-dims.idx", ref.idx_header(0x08, (0, M, M, M)), "IDXHeaderError",
             ("4294967295",),
             "0x4294967295x4294967295x4294967295: zero values, but a shape NumPy cannot hold"),
    ]


def readme(all_cases: list[Case]) -> str:
    lines = [
        "# Malformed IDX inputs",
        "",
        "Generated by `make_corpus.py` (run it to regenerate; tests/test_malformed.py checks that",
        "the files match it). Every file must make `fastidx.read_idx` raise the listed `IDXError`.",
        "",
        "| file | bytes | expected error | what is wrong |",
        "|---|---|---|---|",
    ]
    for case in all_cases:
        lines.append(f"| {case.name} | {len(case.data)} | {case.error} | {case.why} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    all_cases = cases()
    for case in all_cases:
        (HERE / case.name).write_bytes(case.data)
    (HERE / "README.md").write_text(readme(all_cases))
    print(f"wrote {len(all_cases)} files to {HERE}")


if __name__ == "__main__":
    main()

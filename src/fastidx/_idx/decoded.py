"""The decoded byte stream of an IDX input: gzip members inflated by ISA-L or zlib, or raw bytes.

:class:`Decoded` gives exact reads of the decoded bytes and, at the end, checks that nothing
follows the payload and that every gzip member is complete and intact. Which inflater runs is
:mod:`fastidx._inflate`'s choice; this module owns the hand-over to zlib and the gzip error messages.
"""

from __future__ import annotations

import numpy as np

from .. import _inflate, _kernels
from .._errors import GzipError, IDXTrailingDataError
from .source import Replay

MAP_CHUNK = 1 << 18  # uint8 bytes decoded per lookup-table pass: stays in L2 cache
TRAILING_PROBE = 1 << 16  # at most this many bytes after the payload are decoded to report them


class EndOfInput(Exception):
    """Internal: the decoded stream ended after ``got`` bytes of a read."""

    def __init__(self, got: int):
        self.got = got


class ZlibMustJudge(Exception):
    """Internal: ISA-L refused the stream (or met a header zlib must judge): replay it with zlib."""


class Decoded:
    """The decoded IDX byte stream of an :class:`~.source.Input`: exact reads and a final
    completeness check.

    gzip is inflated by ISA-L when ``fastidx._inflate`` says so, else by zlib. Anything ISA-L
    refuses (or a member header it would judge differently) is decoded again by zlib from the start
    of the stream, and zlib's verdict stands: the errors, and what is accepted, are zlib's.
    """

    def __init__(self, inp):
        self.inp = inp
        self.offset = 0  # decoded bytes handed out so far
        self._chunks = inp  # where compressed chunks come from (a replay once zlib takes over)
        self._inflater = _inflate.new_inflater(inp.replayable) if inp.is_gzip else None

    @property
    def inflater(self) -> str | None:
        """``"isal"``, ``"zlib"``, or ``None`` for raw input."""
        if self._inflater is None:
            return None
        return "isal" if isinstance(self._inflater, _inflate.IsalInflater) else "zlib"

    def read_exact(self, dst: np.ndarray) -> None:
        """Fill the uint8 array ``dst`` with the next decoded bytes, or raise :class:`EndOfInput`."""
        want = dst.shape[0]
        if self._inflater is None:
            got = self.inp.readinto(memoryview(dst))
        else:
            try:
                got = self._inflate(dst)
            except ZlibMustJudge:
                self._hand_over_to_zlib()
                got = self._inflate(dst)
        self.offset += got
        if got < want:
            raise EndOfInput(got)

    def read_chunk(self, limit: int):
        """The next decoded bytes (at least one, at most ``limit``) in a buffer of their own, that
        nothing will write to again; :class:`EndOfInput` when the stream has ended."""
        inflater = self._inflater
        if isinstance(inflater, _inflate.IsalInflater):
            try:
                while True:
                    try:
                        chunk = inflater.inflate_chunk(limit)
                    except _kernels.InflateError as exc:
                        if exc.kind == "fallback":
                            raise ZlibMustJudge() from None
                        raise self._gzip_error(exc) from None
                    if chunk:
                        self.offset += len(chunk)
                        return chunk
                    next_chunk = self._chunks.next_chunk()
                    if next_chunk is None:
                        if not inflater.at_member_end:
                            raise ZlibMustJudge()
                        raise EndOfInput(0)
                    inflater.feed(next_chunk)
            except ZlibMustJudge:
                self._hand_over_to_zlib()
        # zlib (or raw): a fresh buffer per call; only ever the fallback, so its cost is no matter.
        out = np.empty(min(limit, MAP_CHUNK), np.uint8)
        try:
            self.read_exact(out)
        except EndOfInput as end:
            if not end.got:
                raise
            return out[: end.got]
        return out

    def zlib_agrees(self, at_end: bool = False) -> None:
        """Before an error about the decoded bytes (a bad IDX header, too few or too many bytes):
        when ISA-L decoded them, raise zlib's :class:`GzipError` instead if zlib refuses them (or,
        ``at_end``, when ISA-L found the stream's end there, if zlib refuses what follows). ISA-L
        accepts some damaged deflate data that zlib refuses (incomplete Huffman codes); zlib's
        verdict stands, so that zlib reads exactly as far as it would have on its own."""
        if not isinstance(self._inflater, _inflate.IsalInflater):
            return
        self._hand_over_to_zlib()
        if at_end:
            try:
                self.read_exact(np.empty(1, np.uint8))
            except EndOfInput:
                pass

    def _hand_over_to_zlib(self) -> None:
        """Decode the stream again with zlib from its start, up to where the decoder stands."""
        self._chunks = Replay(self.inp)
        self._inflater = _inflate.ZlibInflater()
        scratch, skipped = np.empty(MAP_CHUNK, np.uint8), 0
        while skipped < self.offset:
            n = self._inflate(scratch[: min(scratch.shape[0], self.offset - skipped)])
            if n == 0:
                raise GzipError(
                    self.inp.name,
                    f"ISA-L and zlib disagree on this gzip stream: zlib ends it after {skipped} "
                    f"decoded bytes, ISA-L had {self.offset}",
                )
            skipped += n

    def _inflate(self, dst: np.ndarray) -> int:
        inflater = self._inflater
        want = dst.shape[0]
        got = 0
        while got < want:
            try:
                got += inflater.inflate_into(dst[got:])
            except _kernels.InflateError as exc:
                if exc.kind == "fallback":
                    raise ZlibMustJudge() from None
                raise self._gzip_error(exc) from None
            if got >= want:
                break
            if not inflater.needs_input:
                raise GzipError(self.inp.name, "zlib made no progress on the gzip stream")
            chunk = self._chunks.next_chunk()
            if chunk is None:
                if not inflater.at_member_end:
                    if isinstance(inflater, _inflate.IsalInflater):
                        raise ZlibMustJudge()  # zlib's words for a truncated stream
                    raise GzipError(
                        self.inp.name,
                        f"gzip stream is truncated: it ends inside a compressed member after "
                        f"{inflater.total_in} compressed bytes ({self.offset + got} decoded)",
                    )
                return got
            inflater.feed(chunk)
        return got

    def _gzip_error(self, exc) -> GzipError:
        if exc.kind == "junk":
            return GzipError(
                self.inp.name,
                f"junk after the gzip stream at compressed offset {exc.offset}: {exc}",
            )
        reason = str(exc)
        known = {
            "incorrect data check": "gzip CRC-32 mismatch: the compressed data is corrupted",
            "incorrect length check": "gzip length check failed: the member's ISIZE does not match",
            "incorrect header check": "invalid gzip member header",
            "unknown compression method": "gzip member uses an unknown compression method",
        }
        message = known.get(reason, f"corrupt gzip data ({reason})")
        return GzipError(self.inp.name, f"{message} near compressed offset {exc.offset}")

    def finish(self, header) -> None:
        """Check that nothing follows the payload and (gzip) that the stream is complete and intact.

        At most ``TRAILING_PROBE`` bytes beyond the payload are decoded: a file with more is
        refused without inflating (or reading) the rest, however large it would decode."""
        if self._inflater is None and self.inp.size is not None:
            extra, more = self.inp.remaining, False
        else:
            probe = np.empty(TRAILING_PROBE, np.uint8)
            try:
                self.read_exact(probe)
            except EndOfInput as end:
                extra, more = end.got, False
            else:
                extra, more = TRAILING_PROBE, True
        if extra:
            self.zlib_agrees(at_end=not more)
            count = f"at least {extra}" if more else f"{extra}"
            raise IDXTrailingDataError(
                self.inp.name, f"{header.describe()} but {count} more bytes come after the payload"
            )

"""Which gzip inflater decodes a stream: ISA-L (the ``isal`` package) when it can, else zlib.

zlib's ``inflate`` is most of a cold parse of MNIST; ISA-L's, driven through ``isal``'s streaming
``IgzipDecompressor``, takes about half the time (README, "Performance"). Both inflaters offer the
interface of :class:`fastidx._native.Inflater` (``feed``, ``inflate_into``, ``needs_input``,
``at_member_end``, ``total_in``), so the decoder in ``fastidx._idx`` does not care which one runs.

ISA-L checks what zlib checks (the CRC-32 and length of every member and an FHCRC header CRC),
but one error code covers them all and it accepts gzip headers with reserved flag bits, which
zlib refuses. So :class:`IsalInflater` hands every member header that is not the plain kind, and
every error, to its caller as an :class:`InflateError` of kind ``"fallback"``: the decoder then
replays the stream with zlib from the start, and zlib's verdict (and message) is the one given.
"""

from __future__ import annotations

import collections
import os

import numpy as np

from ._kernels import InflateError
from ._kernels import Inflater as ZlibInflater  # fastidx._native's, or the pure-Python fallback's

#: Set to ``zlib`` to decode with zlib even when ISA-L is installed.
ENV_INFLATER = "FASTIDX_INFLATER"

# Decoded bytes asked of ISA-L per call: a slice that stays in the L2 cache on its way to the output.
_STEP = 1 << 18
_FEED = 1 << 16  # compressed bytes handed to ISA-L per call
_PLAIN_FLAGS = 0x1F  # FTEXT, FHCRC, FEXTRA, FNAME, FCOMMENT; the three high bits are reserved

_isal = None  # the isal.igzip_lib module, once imported; False when it cannot be


def _igzip():
    global _isal
    if _isal is None:
        try:
            from isal import igzip_lib
        except ImportError:
            _isal = False
        else:
            _isal = igzip_lib if hasattr(igzip_lib, "IgzipDecompressor") else False
    return _isal


def choice() -> str:
    """``"isal"`` or ``"zlib"``: which inflater decodes a seekable gzip input in this process."""
    wanted = os.environ.get(ENV_INFLATER, "").strip().lower()
    if wanted == "zlib":
        return "zlib"
    return "isal" if _igzip() else "zlib"


def new_inflater(replayable: bool):
    """An inflater for a gzip input; ISA-L only when the input can be read again from its start
    (the zlib replay that gives the verdict on anything ISA-L refuses needs it)."""
    if replayable and choice() == "isal":
        return IsalInflater()
    return ZlibInflater()


# Where the inflater stands in a (possibly multi-member) gzip stream.
_START, _IN_MEMBER, _AFTER_MEMBER, _IN_PADDING = range(4)


class IsalInflater:
    """Streaming gzip decoder over ISA-L with the interface of ``_native.Inflater``.

    Between members it accepts zero padding, as ``_native.Inflater`` does, and reports anything
    else as junk; a member header with reserved flag bits or an unknown method, and every error
    ISA-L reports, become ``InflateError("fallback", ...)``.
    """

    def __init__(self):
        self._igzip = _igzip()
        self._member = None  # the IgzipDecompressor of the current member
        self._state = _START
        self._queue = collections.deque()  # fed bytes not yet handed to a member's decompressor
        self._queued = 0
        self._hungry = True  # the last inflate_into stopped for want of input
        self.total_in = 0  # compressed bytes fed so far
        self.members = 0

    def feed(self, data) -> None:
        """Give the next chunk of compressed input; it must not change until it is used up."""
        data = memoryview(data).cast("B")
        self.total_in += len(data)
        if len(data):
            self._queue.append(data)
            self._queued += len(data)
        self._hungry = False

    @property
    def needs_input(self) -> bool:
        return self._hungry

    @property
    def at_member_end(self) -> bool:
        return self._state in (_AFTER_MEMBER, _IN_PADDING)

    def _take(self, n: int):
        """Up to ``n`` queued bytes from the front (ISA-L copies what it does not use at once:
        small slices keep that copy small)."""
        part = self._queue.popleft()
        if len(part) > n:
            self._queue.appendleft(part[n:])
            part = part[:n]
        self._queued -= len(part)
        return part

    def _head(self, n: int) -> bytes:
        out = b""
        for part in self._queue:
            out += bytes(part[: n - len(out)])
            if len(out) >= n:
                break
        return out

    def inflate_into(self, dst: np.ndarray) -> int:
        """Decode into the uint8 array ``dst`` until it is full or the input is used up."""
        want = dst.shape[0]
        produced = 0
        while produced < want:
            chunk = self.inflate_chunk(want - produced)
            if not chunk:
                break
            n = len(chunk)
            dst[produced : produced + n] = np.frombuffer(chunk, np.uint8)
            produced += n
        return produced

    def inflate_chunk(self, limit: int) -> bytes:
        """The next decoded bytes, at most ``limit`` (and at most 256 KiB) of them, as a new bytes
        object; empty when the input is used up (``needs_input``) or the stream is over."""
        while True:
            if self._state == _IN_MEMBER:
                member = self._member
                data = b""
                if member.needs_input:
                    if not self._queued:
                        self._hungry = True
                        return b""
                    data = self._take(_FEED)
                try:
                    chunk = member.decompress(data, min(limit, _STEP))
                except self._igzip.IsalError as exc:
                    raise InflateError("fallback", f"ISA-L: {exc}", self.total_in) from None
                if member.eof:
                    self.members += 1
                    rest = member.unused_data
                    if rest:
                        self._queue.appendleft(memoryview(rest))
                        self._queued += len(rest)
                    self._member = None
                    self._state = _AFTER_MEMBER
                if chunk:
                    self._hungry = False
                    return chunk
                if not data and not member.eof and not member.needs_input:
                    # Never spin: an ISA-L that neither consumes nor produces is zlib's to judge.
                    raise InflateError("fallback", "ISA-L made no progress", self.total_in)
                continue
            # Between members: zero padding, the next member's header, junk or the end.
            while self._state != _START and self._queue and self._queue[0][0] == 0:
                part = self._queue.popleft()
                rest = bytes(part).lstrip(b"\x00")
                self._queued -= len(part) - len(rest)
                if rest:
                    self._queue.appendleft(memoryview(rest))
                self._state = _IN_PADDING
            if not self._queued:
                self._hungry = True
                return b""
            head = self._head(4)
            if head[0] != 0x1F:
                raise InflateError(
                    "junk",
                    "byte 0x%02x where a gzip member or the end was expected" % head[0],
                    self.total_in - self._queued,
                )
            self._state = _START  # a member has begun: the stream may not end here
            if len(head) < 4:
                # The header goes on in the next chunk, and the caller's buffer may be reused for
                # it: keep a copy of these few bytes.
                self._queue = collections.deque([memoryview(head)])
                self._hungry = True
                return b""
            if head[1] != 0x8B or head[2] != 8 or head[3] & ~_PLAIN_FLAGS:
                raise InflateError("fallback", "a gzip member header zlib must judge", self.total_in)
            self._member = self._igzip.IgzipDecompressor(self._igzip.DECOMP_GZIP)
            self._state = _IN_MEMBER

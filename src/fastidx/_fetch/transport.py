"""One URL's bytes into a local file: HTTP(S) with retries, resume and deadlines, or a file:// copy.

Imported only when a download is really needed (urllib, http.client, ssl and socket cost tens of
milliseconds to import). Every wait is bounded:

* ``Limits.deadline``: when the whole fetch() must be done (``FASTIDX_TIMEOUT``); no back-off sleep
  and no socket wait goes past it by more than one stall period.
* ``Limits.stall``: the longest wait for a mirror's answer, and for each read. A mirror that does
  not answer within it (or refuses the connection, or has no DNS entry) is skipped for the rest of
  the fetch; a body that brings less than ``Limits.min_rate`` bytes per second over any such period
  is stalled: resumed once, then left for the next mirror.
* ``Retry-After`` is honoured up to :data:`MAX_BACKOFF` seconds; a server that asks for longer is
  left for the next mirror at once.
"""

from __future__ import annotations

import errno
import http.client
import logging
import os
import random
import re
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

log = logging.getLogger("fastidx._fetch")

#: Longest single back-off sleep, and the longest ``Retry-After`` honoured.
MAX_BACKOFF = 10.0
#: Failed attempts in a row (without new bytes) after which a mirror is abandoned.
MAX_FAILURES = 5
#: Attempts on one URL in all, however much each one progresses.
MAX_ATTEMPTS = 50
#: Stalled (too slow) transfers on one URL before it is left for the next mirror.
MAX_STALLS = 2
#: A download still running after this long is announced once on stderr (when no progress bar).
SLOW_NOTICE = 5.0

_CHUNK = 1 << 18
_USER_AGENT = "fastidx (Python urllib)"
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504, 507, 520, 521, 522, 523, 524})
_PERMANENT_ERRNOS = frozenset({errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH})
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)


@dataclass(frozen=True)
class Limits:
    deadline: float  # time.monotonic() by which the fetch must be over
    total: float  # seconds the fetch was given (for messages)
    stall: float  # seconds: longest wait for an answer, or for min_rate worth of bytes
    min_rate: float  # bytes per second, over any stall period
    retry_base: float  # first back-off, doubled per failure


class Retry(Exception):
    """A transient failure: try the same URL again after a back-off."""

    def __init__(self, message, *, retry_after=0.0, progressed=False, validator=None, stalled=False):
        super().__init__(message)
        self.retry_after = retry_after
        self.progressed = progressed  # new bytes arrived before the failure
        self.validator = validator  # ETag or Last-Modified of the body being resumed
        self.stalled = stalled  # the body came too slowly (or not at all)


class MirrorFailed(Exception):
    """This URL cannot deliver the file: go to the next mirror. ``dead``: the host never answered."""

    def __init__(self, message: str, *, dead: bool = False):
        super().__init__(message)
        self.dead = dead


class WriteFailed(Exception):
    """Writing the local copy failed (disk full...): no mirror can help."""

    def __init__(self, error: OSError):
        super().__init__(str(error))
        self.error = error


class OutOfTime(Exception):
    """The fetch's deadline (``FASTIDX_TIMEOUT``) passed."""


def host_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL: how messages name a mirror."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class Session:
    """What the downloads of one fetch() share: limits, an opener, hosts that never answered, and
    the notices already written to stderr (each at most once)."""

    def __init__(self, limits: Limits, progress: bool):
        self.limits = limits
        self.progress = progress
        self.dead: dict[str, str] = {}  # host -> why it is skipped for the rest of this fetch
        self._told: set = set()
        self._opener = None

    def remaining(self) -> float:
        return self.limits.deadline - time.monotonic()

    def say(self, key, message: str) -> None:
        """``fastidx: <message>``, once per ``key``, as a WARNING record of the ``fastidx._fetch``
        logger: on stderr when logging is not configured (Python's last-resort handler), wherever
        the application sends warnings otherwise (the command line holds them until it is done)."""
        if key in self._told:
            return
        self._told.add(key)
        log.warning("fastidx: %s", message)

    def open(self, request, timeout: float):
        if self._opener is None:
            # Built per fetch so that proxy environment variables are read now, not at first use.
            self._opener = urllib.request.build_opener()
        return self._opener.open(request, timeout=timeout)

    def transfer(self, url: str, out, spec, *, resume: bool = True) -> bool:
        """Write the body at ``url`` into the empty file ``out``; retry, and resume with Range
        requests when ``resume``. Returns whether the body came in more than one piece.

        Raises :class:`MirrorFailed`, :class:`WriteFailed` or :class:`OutOfTime`.
        """
        if url[:5].lower() == "file:":
            self._copy_file(url, out, spec)
            return False
        return _Download(self, url, out, spec, resume).run()

    def _copy_file(self, url: str, out, spec) -> None:
        path = urllib.request.url2pathname(urllib.parse.urlsplit(url).path)
        try:
            with open(path, "rb") as src:
                bar = Progress(spec.name, os.fstat(src.fileno()).st_size, self.progress)
                try:
                    _pump(src.read, out, spec, bar, self, url)
                finally:
                    bar.close()
        except OSError as exc:
            raise MirrorFailed(f"{exc.strerror or exc}") from None


class _Download:
    """The attempts at one HTTP URL."""

    def __init__(self, session: Session, url: str, out, spec, resume: bool):
        self.session, self.url, self.out, self.spec, self.resume = session, url, out, spec, resume
        self.validator = None
        self.bodies = 0  # responses whose bytes were kept

    def run(self) -> bool:
        limits = self.session.limits
        failures = attempts = stalls = 0
        while True:
            attempts += 1
            try:
                self._attempt()
                return self.bodies > 1
            except Retry as problem:
                self.validator = problem.validator or self.validator
                stalls += problem.stalled
                # Failures in a row count; an attempt that brought new bytes starts the count again.
                failures = 1 if problem.progressed else failures + 1
                if stalls >= MAX_STALLS:
                    raise MirrorFailed(f"too slow ({problem})") from None
                if failures >= MAX_FAILURES or attempts >= MAX_ATTEMPTS:
                    raise MirrorFailed(f"{problem} (gave up after {attempts} attempts)") from None
                if problem.retry_after > MAX_BACKOFF:
                    raise MirrorFailed(f"{problem}, asked to retry after {problem.retry_after:g} s") from None
                delay = min(MAX_BACKOFF, limits.retry_base * 2 ** (failures - 1))
                delay = max(delay / 2 + random.uniform(0, delay / 2), problem.retry_after)
                if delay >= self.session.remaining():
                    raise OutOfTime(str(problem)) from None
                log.info("%s: %s; retrying in %.2f s", self.url, problem, delay)
                time.sleep(delay)

    def _request(self, offset: int):
        request = urllib.request.Request(
            self.url, headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
        )
        if offset:
            request.add_header("Range", f"bytes={offset}-")
            if self.validator:  # resume only if the file is still the same one
                request.add_header("If-Range", self.validator)
        return request

    def _attempt(self) -> None:
        """One request for the bytes ``out`` lacks (a Range request when it has some)."""
        out, session = self.out, self.session
        offset = out.seek(0, os.SEEK_END)
        if offset and not self.resume:
            offset = _restart(out)
        timeout = min(session.limits.stall, session.remaining())
        if timeout <= 0:
            raise OutOfTime("no time left")
        try:
            response = session.open(self._request(offset), timeout)
        except urllib.error.HTTPError as exc:
            with exc:
                if exc.code == 416 and offset:
                    _restart(out)
                    raise Retry("the server refused to resume (416); starting again") from None
                if exc.code in _RETRY_STATUS:
                    raise Retry(f"HTTP {exc.code} {exc.reason}", retry_after=_retry_after(exc.headers)) from None
                raise MirrorFailed(f"HTTP {exc.code} {exc.reason}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise _classify(exc, timeout, answered=False, clipped=timeout < session.limits.stall) from None
        with response:
            start = self._check_start(response, offset)
            self._body(response, start, timeout)

    def _check_start(self, response, offset: int) -> int:
        if response.status == 206 and offset:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            start = int(match.group(1)) if match else -1
            if start != offset:
                _restart(self.out)
                raise Retry(f"the server resumed at byte {start}, not {offset}; starting again")
            return start
        if response.status == 200:
            if offset:
                log.info("%s ignored the Range request; starting again", self.url)
                _restart(self.out)
            self.validator = _validator(response.headers)
            self.bodies = 0
            return 0
        raise MirrorFailed(f"unexpected HTTP status {response.status}")

    def _body(self, response, start: int, timeout: float) -> None:
        out, spec = self.out, self.spec
        length = _int_or_none(response.headers.get("Content-Length"))
        end = start + length if length is not None else None
        if end is not None and end > size_cap(spec):
            raise MirrorFailed(f"announced {end} bytes, far more than the file's size")
        self.bodies += 1
        bar = Progress(spec.name, end or spec.size, self.session.progress, start)
        try:
            # read1: whatever has arrived, at most one socket read; so a trickle is measured and a
            # reset loses nothing that was already received.
            _pump(response.read1, out, spec, bar, self.session, self.url)
        except Retry as problem:
            problem.progressed, problem.validator = bar.done > start, self.validator
            raise
        except (OSError, http.client.HTTPException) as exc:
            problem = _classify(exc, timeout, answered=True)
            if isinstance(problem, Retry):
                problem.progressed, problem.validator = bar.done > start, self.validator
            raise problem from None
        finally:
            bar.close()
        if end is not None and out.tell() < end:
            raise Retry(
                f"connection closed after {out.tell()} of {end} bytes",
                progressed=bar.done > start,
                validator=self.validator,
            )


def _restart(out) -> int:
    out.seek(0)
    out.truncate()
    return 0


def _pump(read, out, spec, bar, session: Session, url: str) -> None:
    """Copy ``read()``'s chunks into ``out``, enforcing the size cap, the rate and the deadline."""
    limits = session.limits
    cap = size_cap(spec)
    began = window = time.monotonic()
    window_bytes = 0
    while chunk := read(_CHUNK):
        try:
            out.write(chunk)
        except OSError as exc:
            raise WriteFailed(exc) from exc
        bar.update(len(chunk))
        if out.tell() > cap:
            raise MirrorFailed(f"sent more than {cap} bytes, far more than the file's size")
        now = time.monotonic()
        window_bytes += len(chunk)
        if now - window >= limits.stall:
            if window_bytes < limits.min_rate * (now - window):
                raise Retry(f"{window_bytes} bytes in {now - window:.1f} s", stalled=True)
            window, window_bytes = now, 0
        if now > limits.deadline:
            raise OutOfTime(f"{bar.done} bytes received")
        if now - began > SLOW_NOTICE and not bar.enabled:
            rate = bar.done / (now - began) / 1e3
            session.say("slow", f"downloading {spec.name} from {host_of(url)} is slow ({rate:.0f} kB/s)")


def _classify(exc: BaseException, timeout: float, *, answered: bool, clipped: bool = False) -> Exception:
    """Turn a network error into :class:`Retry`, :class:`MirrorFailed` or :class:`OutOfTime`."""
    if isinstance(exc, http.client.HTTPException):  # IncompleteRead, BadStatusLine...
        return Retry(f"{type(exc).__name__}: {exc}")
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, str):
        return MirrorFailed(reason)
    if isinstance(reason, (socket.gaierror, ssl.SSLCertVerificationError)):
        return MirrorFailed(str(reason), dead=isinstance(reason, socket.gaierror))
    if isinstance(reason, OSError) and reason.errno in _PERMANENT_ERRNOS:
        return MirrorFailed(reason.strerror or str(reason), dead=True)
    if isinstance(reason, TimeoutError):
        if clipped:
            return OutOfTime("no answer before the deadline")
        if not answered:
            return MirrorFailed(f"no answer within {timeout:g} s", dead=True)
        return Retry(f"no data for {timeout:g} s", stalled=True)
    return Retry(f"{type(reason).__name__}: {reason}")


def _retry_after(headers) -> float:
    try:
        value = float(headers.get("Retry-After", "0"))
    except (TypeError, ValueError):
        return 0.0  # an HTTP date, or junk: our own back-off applies
    return value if value >= 0 else 0.0  # nan and inf compare as they should below


def _validator(headers) -> str | None:
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("Last-Modified")


def _int_or_none(text) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def size_cap(spec) -> int:
    # A re-compressed copy may be somewhat larger than the official file, never twice as large.
    return max(2 * spec.size, spec.size + (16 << 20)) if spec.size else 8 << 30


class Progress:
    """Progress on stderr: a tqdm bar when tqdm is installed, else one line redrawn at most 5 times
    a second. ``done`` counts the bytes so far either way."""

    def __init__(self, label: str, total: int | None, enabled: bool, done: int = 0):
        self.label, self.total, self.enabled, self.done = label, total, enabled, done
        self._last = 0.0
        self._start = time.monotonic()
        self._bar = _tqdm(label, total, done) if enabled else None

    def update(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled and time.monotonic() - self._last >= 0.2:
            self._draw()

    def _draw(self) -> None:
        self._last = time.monotonic()
        mb = self.done / 1e6
        rate = mb / max(self._last - self._start, 1e-6)
        if self.total:
            text = f"{self.label}: {mb:.1f}/{self.total / 1e6:.1f} MB {100 * self.done / self.total:3.0f}%"
        else:
            text = f"{self.label}: {mb:.1f} MB"
        sys.stderr.write(f"\r{text} {rate:.1f} MB/s ")
        sys.stderr.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled:
            self._draw()
            sys.stderr.write("\n")
            sys.stderr.flush()


def _tqdm(label: str, total: int | None, done: int):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=done, desc=label, unit="B", unit_scale=True, unit_divisor=1024,
                file=sys.stderr, leave=True, dynamic_ncols=True)

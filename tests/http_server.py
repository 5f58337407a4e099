"""A real HTTP server on 127.0.0.1 with faults injected per path, and the fixtures that use it.

Import the fixtures into a test module with ``from http_server import fetch_env, server  # noqa``.

Faults (see :class:`Fault`): N answers with an error status, a connection dropped mid-body (reset or
closed cleanly), a stalled or throttled body, one flipped bit, and Range requests honoured (206) or
ignored (200). The server counts requests, Range requests and body bytes sent per path. Everything is
bounded in time: socket timeouts on both sides, and throttling and stalls are capped.
"""

from __future__ import annotations

import hashlib
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from shared_data import CANONICAL_DIR, MNIST_DIR, SHARED_DATA  # noqa: F401 (re-exported)

REPO = Path(__file__).resolve().parents[1]

#: Longest a single response may be delayed in total by stalls and throttling.
MAX_DELAY = 10.0

needs_shared_data = pytest.mark.skipif(
    not (MNIST_DIR / "train-labels-idx1-ubyte.gz").is_file(),
    reason=f"shared MNIST data not found at {MNIST_DIR}",
)


@dataclass
class Fault:
    """Misbehaviour of one path. Counters (``*_times``) apply to the first requests only."""

    status: int = 503
    status_times: int = 0  # answer `status` to the first N requests
    drop_after: int | None = None  # cut the body after this many bytes...
    drop_times: int = 0  # ...for the first N bodies
    drop_mode: str = "reset"  # "reset" (RST) or "close" (clean FIN: a short body)
    stall: float = 0.0  # sleep this long before the body...
    stall_times: int = 0  # ...for the first N bodies
    rate: float | None = None  # throttle the body to this many bytes per second
    flip_bit: int | None = None  # flip this bit of the content (always)
    ignore_range: bool = False  # answer 200 with the whole body to Range requests
    retry_after: str | None = None  # Retry-After header of the `status` answers
    trickle: float | None = None  # send the body one byte every `trickle` seconds...
    trickle_times: int = 0  # ...for the first N bodies
    corrupt_ranges: bool = False  # flip the first byte of every 206 (resumed) body


@dataclass
class PathStats:
    requests: int = 0
    range_requests: int = 0
    bytes_sent: int = 0
    proxied: int = 0  # requests made to this server as a proxy (absolute URL)
    statuses: list = field(default_factory=list)
    ranges: list = field(default_factory=list)


class FaultyServer:
    """A threaded ``http.server`` on 127.0.0.1:<free port> serving registered files."""

    def __init__(self):
        self.routes: dict[str, Path] = {}
        self.faults: dict[str, Fault] = {}
        self.stats: dict[str, PathStats] = {}
        self._lock = threading.Lock()
        self._cache: dict[Path, bytes] = {}
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FaultyServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # -- configuration

    def add_file(self, url_path: str, file: Path) -> str:
        """Serve ``file`` at ``url_path``; returns its full URL."""
        self.routes[url_path] = Path(file)
        return self.url + url_path

    def add_dir(self, url_prefix: str, directory: Path) -> str:
        """Serve every file of ``directory`` under ``url_prefix``; returns the base URL."""
        for file in Path(directory).iterdir():
            if file.is_file():
                self.add_file(f"{url_prefix.rstrip('/')}/{file.name}", file)
        return self.url + url_prefix.rstrip("/")

    def fault(self, url_path: str, **settings) -> Fault:
        self.faults[url_path] = Fault(**settings)
        return self.faults[url_path]

    # -- observation

    def get(self, url_path: str) -> PathStats:
        with self._lock:
            return self.stats.setdefault(url_path, PathStats())

    def total_requests(self) -> int:
        with self._lock:
            return sum(s.requests for s in self.stats.values())

    def reset_stats(self) -> None:
        with self._lock:
            self.stats.clear()

    # -- serving

    def content(self, url_path: str) -> bytes | None:
        file = self.routes.get(url_path)
        if file is None:
            return None
        if file not in self._cache:
            self._cache[file] = file.read_bytes()
        data = self._cache[file]
        fault = self.faults.get(url_path)
        if fault and fault.flip_bit is not None:
            buf = bytearray(data)
            buf[fault.flip_bit // 8] ^= 1 << (fault.flip_bit % 8)
            data = bytes(buf)
        return data


def _make_handler(server: FaultyServer):
    class Handler(BaseHTTPRequestHandler):
        timeout = 10  # bounded: a stuck client cannot hold a thread forever
        protocol_version = "HTTP/1.0"

        def log_message(self, format, *args):
            pass

        def do_GET(self):  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            proxied = re.match(r"https?://[^/]+", path)
            if proxied:  # asked as a forward proxy: serve the path of the absolute URL
                path = path[proxied.end():] or "/"
            range_header = self.headers.get("Range")
            with server._lock:
                stats = server.stats.setdefault(path, PathStats())
                stats.requests += 1
                stats.proxied += bool(proxied)
                stats.ranges.append(range_header)
                if range_header:
                    stats.range_requests += 1
                request_number = stats.requests
                body_number = sum(1 for s in stats.statuses if s in (200, 206)) + 1
            fault = server.faults.get(path, Fault())
            data = server.content(path)
            if data is None:
                return self._status(404, stats)
            if request_number <= fault.status_times:
                return self._status(fault.status, stats, fault.retry_after)

            etag = '"%s"' % hashlib.sha256(data).hexdigest()[:16]
            start = 0
            status = 200
            match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
            if match and not fault.ignore_range:
                if_range = self.headers.get("If-Range")
                if if_range is None or if_range == etag:
                    start = int(match.group(1))
                    status = 206
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        stats.statuses.append(416)
                        return
            body = memoryview(data)[start:]
            if status == 206 and fault.corrupt_ranges and len(body):
                body = memoryview(bytes([body[0] ^ 0xFF]) + bytes(body[1:]))
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", etag)
            self.send_header("Accept-Ranges", "none" if fault.ignore_range else "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            with server._lock:
                stats.statuses.append(status)

            deadline = time.monotonic() + MAX_DELAY
            if fault.stall and body_number <= fault.stall_times:
                time.sleep(min(fault.stall, MAX_DELAY))
            drop_at = fault.drop_after if body_number <= fault.drop_times else None
            chunk = 16 << 10
            trickle = fault.trickle if body_number <= fault.trickle_times else None
            if trickle:
                chunk = 1
            sent = 0
            began = time.monotonic()
            try:
                while sent < len(body):
                    end = min(sent + chunk, len(body))
                    if drop_at is not None:
                        if sent >= drop_at:
                            return self._drop(fault.drop_mode)
                        end = min(end, drop_at)
                    self.wfile.write(body[sent:end])
                    with server._lock:
                        stats.bytes_sent += end - sent
                    sent = end
                    if trickle and time.monotonic() < deadline:
                        self.wfile.flush()
                        time.sleep(min(trickle, max(deadline - time.monotonic(), 0)))
                    if fault.rate and time.monotonic() < deadline:
                        ahead = sent / fault.rate - (time.monotonic() - began)
                        if ahead > 0:
                            time.sleep(min(ahead, max(deadline - time.monotonic(), 0)))
                if drop_at is not None and sent >= drop_at:
                    return self._drop(fault.drop_mode)
            except (BrokenPipeError, ConnectionResetError, socket.timeout):
                pass

        def _status(self, code: int, stats: PathStats, retry_after: str | None = None):
            body = f"{code}\n".encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            if retry_after is not None:
                self.send_header("Retry-After", retry_after)
            self.end_headers()
            self.wfile.write(body)
            with server._lock:
                stats.statuses.append(code)

        def _drop(self, mode: str):
            self.wfile.flush()
            _wait_until_delivered(self.connection)
            if mode == "reset":
                # SO_LINGER 0: close() sends RST, the client sees a connection reset. An abortive
                # close discards what is still in the send queue, so _wait_until_delivered first:
                # the client then has exactly `drop_after` bytes, whatever the scheduling.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
            self.close_connection = True

    return Handler


def _wait_until_delivered(sock: socket.socket, timeout: float = 5.0) -> None:
    """Wait (bounded) until the peer's kernel has acknowledged every byte sent on ``sock``."""
    try:
        import fcntl
        import termios
    except ImportError:  # pragma: no cover - not Linux/Unix
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pending = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
        except OSError:
            return
        if pending == 0:
            return
        time.sleep(0.001)


class SilentServer:
    """A mirror that never answers: 127.0.0.1 accepts the connection, nobody ever replies (what a
    host behind a packet-dropping firewall looks like once connected). Counts connections."""

    def __init__(self):
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.05)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self.connections = 0

    @property
    def url(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"http://{host}:{port}"

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (socket.timeout, OSError):
                continue
            self.connections += 1
            self._held.append(conn)  # never read, never answered, closed at teardown

    def start(self) -> SilentServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self._held:
            conn.close()
        self._sock.close()


@pytest.fixture
def silent_servers():
    """Factory of :class:`SilentServer` s, all stopped at teardown."""
    made: list[SilentServer] = []

    def make() -> SilentServer:
        made.append(SilentServer().start())
        return made[-1]

    try:
        yield make
    finally:
        for srv in made:
            srv.stop()


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def server():
    """A :class:`FaultyServer`, started, stopped at teardown."""
    srv = FaultyServer().start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def fetch_env(tmp_path, monkeypatch):
    """An isolated environment for fetch(): fresh cache, no foreign caches, fast retries, and any
    attempt to reach a host other than 127.0.0.1 sent to a dead proxy on 127.0.0.1 (so it fails at
    once instead of touching the network). Returns the cache directory."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("FASTIDX_HOME", str(cache))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.setenv("FASTIDX_RETRY_BASE", "0.01")
    # A whole download may take this long: generous, so a loaded machine never fails a test that is
    # not about deadlines (those set their own, smaller limits).
    monkeypatch.setenv("FASTIDX_TIMEOUT", "120")
    for name in ("FASTIDX_MIRROR", "FASTIDX_OFFLINE", "FASTIDX_TORCHVISION_ROOT", "FASTIDX_LOCK_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    dead_proxy = "http://127.0.0.1:9"
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, dead_proxy)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    return cache


# --- data helpers ---------------------------------------------------------------------------------


def idx_bytes(payload: bytes, dims: tuple[int, ...]) -> bytes:
    """An IDX file of unsigned bytes: magic (0, 0x08, ndim), big-endian dimensions, payload."""
    return struct.pack(">HBB", 0, 8, len(dims)) + struct.pack(f">{len(dims)}I", *dims) + payload


def sha256_file(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def gunzip_sha256(path) -> str:
    import gzip

    with gzip.open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def leftovers(directory: Path) -> list[str]:
    """Temporary files left in a cache directory (there should be none)."""
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if p.name.endswith((".part", ".tmp")))


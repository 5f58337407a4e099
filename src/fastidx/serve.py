"""``fastidx serve``: the cache's verified dataset files, read-only over HTTP, as a mirror.

For a cluster without internet: the head node downloads once (``fastidx download``), serves, and
every node uses it as its mirror (``FASTIDX_MIRROR=http://head:8000``); each node still checks
every file against the registry's hash itself.

Only files named by :mod:`fastidx.registry` are served, at ``/<dataset dir>/<official name>``
(the layout ``FASTIDX_MIRROR`` expects), and only those that match their official SHA-256 when the
server starts (re-checked when a file changes). Nothing else of the cache or the disk is reachable:
no listings, no other paths, symlinks refused, ``GET`` and ``HEAD`` only. Standard library only.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from . import registry

_CHUNK = 1 << 20


def _sha256(path: Path, decompress: bool = False) -> str:
    digest = hashlib.sha256()
    with (gzip.open(path, "rb") if decompress else open(path, "rb")) as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _identity(st: os.stat_result) -> tuple:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def verified(path: Path, spec: registry.FileSpec) -> tuple | None:
    """The identity of ``path`` if it is a regular file (not a symlink) matching ``spec``'s hash
    (of the file, or of its gunzipped content)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    # As fastidx's own downloads: genuine when the file's or its decoded content's hash is the
    # official one (a mirror may have re-compressed the same data).
    try:
        ok = spec.sha256 is not None and _sha256(path) == spec.sha256
        if not ok and spec.content_sha256 is not None:
            ok = _sha256(path, decompress=True) == spec.content_sha256
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error):
        return None
    return _identity(st) if ok else None


class Catalog:
    """URL path → (file, its spec, identity when verified) of the cache's servable files."""

    def __init__(self, root: Path):
        self.root = root
        self.files: dict[str, tuple[Path, registry.FileSpec, tuple]] = {}
        self._lock = threading.Lock()
        for spec in registry.DATASETS.values():
            candidates = list(spec.files.values()) + ([spec.archive] if spec.archive else [])
            for file in candidates:
                url = f"/{spec.dir_name}/{file.name}"
                if url in self.files:
                    continue
                path = root / spec.dir_name / file.name
                ident = verified(path, file)
                if ident is not None:
                    self.files[url] = (path, file, ident)

    def open(self, url: str):
        """``(open file, size)`` for a served URL, or None; a file changed since it was verified
        is verified again (and dropped if it no longer matches)."""
        with self._lock:
            entry = self.files.get(url)
        if entry is None:
            return None
        path, spec, ident = entry
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return None
        f = os.fdopen(fd, "rb")
        now = _identity(os.fstat(fd))
        if now != ident:
            fresh = verified(path, spec)
            if fresh is None or fresh != now:
                f.close()
                with self._lock:
                    self.files.pop(url, None)
                return None
            with self._lock:
                self.files[url] = (path, spec, fresh)
        return f, now[2]


def make_handler(catalog: Catalog, log=None):
    class Handler(BaseHTTPRequestHandler):
        server_version = "fastidx-serve"
        timeout = 60  # a stuck client cannot hold a thread forever

        def log_message(self, format, *args):
            if log is not None:
                log.write(f"{self.address_string()} {format % args}\n")
                log.flush()

        def do_HEAD(self):  # noqa: N802 (http.server's naming)
            self._answer(body=False)

        def do_GET(self):  # noqa: N802
            self._answer(body=True)

        def _answer(self, body: bool):
            url = self.path.split("?", 1)[0]
            opened = catalog.open(url)
            if opened is None:
                self.send_error(404, "not a verified dataset file of this cache")
                return
            f, size = opened
            with f:
                start, status = 0, 200
                wanted = self.headers.get("Range", "")
                if wanted.startswith("bytes=") and wanted.endswith("-") and wanted[6:-1].isdigit():
                    start = int(wanted[6:-1])
                    if start >= size:
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{size}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(size - start))
                self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                self.end_headers()
                if not body:
                    return
                f.seek(start)
                try:
                    while block := f.read(_CHUNK):
                        self.wfile.write(block)
                except (BrokenPipeError, ConnectionResetError):
                    pass

    return Handler


def make_server(root: Path, host: str = "127.0.0.1", port: int = 8000, log=None):
    """A :class:`ThreadingHTTPServer` serving ``root``'s verified dataset files (not started)."""
    catalog = Catalog(root)
    httpd = ThreadingHTTPServer((host, port), make_handler(catalog, log))
    httpd.daemon_threads = True
    httpd.catalog = catalog
    return httpd


def run(args) -> int:
    """The ``fastidx serve`` command: serve until interrupted."""
    from ._paths import cache_root

    root = Path(os.path.abspath(cache_root(args.cache_dir)))
    httpd = make_server(root, args.bind, args.port, log=sys.stderr if args.log else None)
    host, port = httpd.server_address[:2]
    files = sorted(httpd.catalog.files)
    print(f"fastidx: serving {len(files)} verified files of {root} at http://{host}:{port}/ "
          f"(read-only; Ctrl-C stops)", file=sys.stderr)
    for url in files:
        print(f"  {url}", file=sys.stderr)
    print(f"nodes use it with: FASTIDX_MIRROR=http://{host}:{port}", file=sys.stderr, flush=True)
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        httpd.server_close()
    return 0

"""``fastidx serve``: a head node's verified files as the mirror of a cluster without internet."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
from http_server import MNIST_DIR, needs_shared_data

from fastidx import serve
from fastidx.datasets import mnist

pytestmark = needs_shared_data

FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@pytest.fixture
def head_cache(tmp_path):
    """A head node's cache: MNIST verified, plus things that must never be served."""
    root = tmp_path / "head"
    (root / "mnist").mkdir(parents=True)
    for name in FILES:
        shutil.copyfile(MNIST_DIR / name, root / "mnist" / name)
    (root / "fashion_mnist").mkdir()
    (root / "fashion_mnist" / "train-images-idx3-ubyte.gz").write_bytes(b"not the real file")
    os.symlink(MNIST_DIR / FILES[1], root / "fashion_mnist" / "train-labels-idx1-ubyte.gz")
    (root / "mnist" / "notes.txt").write_text("private")
    (root / "fetch-manifest.json").write_text("{}")
    (tmp_path / "secret").write_text("outside the cache")
    return root


@pytest.fixture
def served(head_cache):
    httpd = serve.make_server(head_cache, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def request(httpd, path, method="GET", headers=None):
    host, port = httpd.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        conn.close()


def test_only_verified_registry_files_are_served(served, head_cache):
    assert sorted(served.catalog.files) == sorted(f"/mnist/{name}" for name in FILES)
    status, body, _ = request(served, f"/mnist/{FILES[1]}")
    assert status == 200 and body == (MNIST_DIR / FILES[1]).read_bytes()
    for path in ("/", "/mnist/", "/mnist/notes.txt", "/fetch-manifest.json", "/../secret",
                 "/mnist/../../secret", f"/fashion_mnist/{FILES[0]}", f"/fashion_mnist/{FILES[1]}",
                 "/decoded/", "/mnist/%2e%2e/fetch-manifest.json"):
        assert request(served, path)[0] == 404, path
    assert request(served, f"/mnist/{FILES[1]}", "POST")[0] == 501
    assert request(served, f"/mnist/{FILES[1]}", "PUT")[0] == 501
    assert request(served, f"/mnist/{FILES[1]}", "DELETE")[0] == 501
    assert (head_cache / "mnist" / FILES[1]).read_bytes() == (MNIST_DIR / FILES[1]).read_bytes()


def test_head_and_range_requests(served):
    size = (MNIST_DIR / FILES[3]).stat().st_size
    status, body, headers = request(served, f"/mnist/{FILES[3]}", "HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) == size
    status, body, headers = request(served, f"/mnist/{FILES[3]}", headers={"Range": "bytes=100-"})
    assert status == 206 and body == (MNIST_DIR / FILES[3]).read_bytes()[100:]
    assert headers["Content-Range"] == f"bytes 100-{size - 1}/{size}"
    assert request(served, f"/mnist/{FILES[3]}", headers={"Range": f"bytes={size}-"})[0] == 416


def test_a_file_changed_after_start_is_no_longer_served(served, head_cache):
    target = head_cache / "mnist" / FILES[3]
    data = bytearray(target.read_bytes())
    data[-20] ^= 1
    target.write_bytes(bytes(data))
    assert request(served, f"/mnist/{FILES[3]}")[0] == 404
    assert request(served, f"/mnist/{FILES[1]}")[0] == 200


def test_a_node_loads_mnist_from_the_served_cache(served, fetch_env):
    os.environ["FASTIDX_MIRROR"] = "http://%s:%d" % served.server_address[:2]
    try:
        (x, y), (xt, yt) = mnist.load_data()
    finally:
        del os.environ["FASTIDX_MIRROR"]
    ref, _ = mnist.load_data(path=MNIST_DIR, cache=False)
    assert np.array_equal(x, ref[0]) and np.array_equal(y, ref[1]) and xt.shape == (10000, 28, 28)
    assert sorted(p.name for p in (fetch_env / "mnist").glob("*.gz")) == sorted(FILES)


def test_the_command_binds_the_address_given_and_stops_on_ctrl_c(head_cache):
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastidx", "serve", "--cache-dir", str(head_cache), "--port", "0",
         "--bind", "127.0.0.1"],
        stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stderr.readline()
        match = re.search(r"serving 4 verified files of (.+) at http://127\.0\.0\.1:(\d+)/", first)
        assert match, first
        port = int(match.group(2))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", f"/mnist/{FILES[1]}")
        assert conn.getresponse().read() == (MNIST_DIR / FILES[1]).read_bytes()
        conn.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rest = proc.communicate(timeout=120)[1]
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    assert proc.returncode == 130, rest

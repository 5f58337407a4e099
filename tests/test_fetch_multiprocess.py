"""fetch() from several processes at once, and processes that die or are interrupted mid-download."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import filelock
import pytest

from fastidx import _fetch, registry
from fastidx._errors import DownloadError
from http_server import (  # fixtures fetch_env, server: conftest.py
    MNIST_DIR,
    REPO,
    gunzip_sha256,
    leftovers,
    needs_shared_data,
)

pytestmark = [needs_shared_data, pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")]

PROCESSES = 6
MNIST = registry.get("mnist")
TRAIN_IMAGES = "/mnist/train-images-idx3-ubyte.gz"

# A child process: waits for the go signal, fetches MNIST from the test server only (the registry's
# internet URLs removed), prints {role: [path, sha256]}.
CHILD = textwrap.dedent(
    """
    import dataclasses, hashlib, json, os, signal, sys, time
    from pathlib import Path
    from fastidx import _fetch, registry

    # Ctrl-C interrupts, as in a terminal: a parent run in the background passes SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    ready, go, mirror = sys.argv[1:4]
    Path(ready).touch()
    deadline = time.monotonic() + 60
    while go != "-" and not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.005)
    spec = registry.get("mnist")
    spec = dataclasses.replace(
        spec, files={r: dataclasses.replace(f, urls=()) for r, f in spec.files.items()})
    files = _fetch.fetch(spec, mirrors=mirror)
    print(json.dumps({r: [str(p), hashlib.sha256(p.read_bytes()).hexdigest()] for r, p in files.items()}))
    """
)


def child_env() -> dict[str, str]:
    env = dict(os.environ)  # fetch_env's settings: cache, fast retries, dead proxy for the internet
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    return env


def start_child(tmp_path: Path, name: str, mirror: str, go: Path | None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / f"ready-{name}"), str(go or "-"), mirror],
        env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_six_processes_download_each_file_once(fetch_env, server, tmp_path):
    server.add_dir("/mnist", MNIST_DIR)
    sizes = {f"/mnist/{p.name}": p.stat().st_size for p in MNIST_DIR.iterdir()}
    # Slow bodies, so that every process arrives while the first is still downloading.
    for path, size in sizes.items():
        server.fault(path, rate=max(size / 0.4, 6e6) if path != TRAIN_IMAGES else 6e6)
    go = tmp_path / "go"
    children = [start_child(tmp_path, str(i), server.url, go) for i in range(PROCESSES)]
    try:
        wait_for(lambda: all((tmp_path / f"ready-{i}").exists() for i in range(PROCESSES)), 60, "children")
        began = time.monotonic()
        go.touch()
        results = [child.communicate(timeout=60) for child in children]
        elapsed = time.monotonic() - began
    finally:
        for child in children:
            child.kill()
    for child, (out, err) in zip(children, results):
        assert child.returncode == 0, err
    outputs = [json.loads(out) for out, _ in results]
    assert all(output == outputs[0] for output in outputs)  # same files, same bytes
    for role, (path, _) in outputs[0].items():
        assert Path(path) == fetch_env / "mnist" / MNIST.files[role].name
        assert gunzip_sha256(path) == MNIST.files[role].content_sha256
    report = {}
    for path, size in sizes.items():
        stats = server.get(path)
        report[path] = (stats.requests, stats.bytes_sent, size)
        assert stats.requests == 1, report
        assert stats.bytes_sent <= 1.2 * size, report
    waits = [err.count("fastidx: waiting for another process") for _, err in results]
    assert sum(waits) >= 1 and max(waits) <= len(sizes), waits  # said once per file awaited, at most
    assert leftovers(fetch_env / "mnist") == []
    print(f"\n{PROCESSES} processes, {elapsed:.2f} s, per file (requests, bytes sent, size): {report}, waits {waits}")


def test_killed_downloader_does_not_block_others(fetch_env, server, tmp_path, capfd):
    server.add_dir("/mnist", MNIST_DIR)
    server.fault(TRAIN_IMAGES, rate=2e6)
    victim = start_child(tmp_path, "victim", server.url, None)
    try:
        wait_for(lambda: server.get(TRAIN_IMAGES).bytes_sent > 500_000, 30, "the download to start")
        target = fetch_env / "mnist" / "train-images-idx3-ubyte.gz"
        assert leftovers(target.parent)  # its temporary file
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
    finally:
        victim.kill()
        victim.communicate()
    assert _fetch.lock_path(target).exists()  # the lock file stays; the kernel dropped the lock
    server.fault(TRAIN_IMAGES)  # full speed now
    capfd.readouterr()
    files = _fetch.fetch(_local_mnist(), mirrors=server.url)
    assert "waiting for another process" not in capfd.readouterr().err  # the dead holder's lock was free
    assert gunzip_sha256(files["train_images"]) == MNIST.files["train_images"].content_sha256
    assert leftovers(target.parent) == []  # the dead process's temporary file was cleaned up


@contextlib.contextmanager
def lock_held_by_a_child(target):
    """A child process holding ``target``'s download lock (HOLDER) until it is killed; it is
    always killed and reaped on exit."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(_fetch.lock_path(target))],
        env=child_env(), stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.kill()
        holder.communicate()


def test_stale_lock_file_of_a_killed_holder(fetch_env, server, tmp_path, capfd):
    server.add_dir("/mnist", MNIST_DIR)
    target = fetch_env / "mnist" / "train-labels-idx1-ubyte.gz"
    target.parent.mkdir(parents=True)
    with lock_held_by_a_child(target) as holder:
        with pytest.raises(filelock.Timeout):
            filelock.FileLock(str(_fetch.lock_path(target))).acquire(timeout=0.1)  # really held
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    capfd.readouterr()
    _fetch.fetch(_local_mnist(), mirrors=server.url)
    assert "waiting for another process" not in capfd.readouterr().err  # the dead holder's lock was free


def test_waiter_says_once_what_it_waits_for_and_gives_up_on_a_stalled_holder(
    fetch_env, server, tmp_path, monkeypatch, capfd
):
    server.add_dir("/mnist", MNIST_DIR)
    monkeypatch.setenv("FASTIDX_LOCK_TIMEOUT", "1.5")
    target = fetch_env / "mnist" / "train-images-idx3-ubyte.gz"
    target.parent.mkdir(parents=True)
    with lock_held_by_a_child(target):
        began = time.monotonic()
        with pytest.raises(DownloadError, match="FASTIDX_LOCK_TIMEOUT") as info:
            _fetch.fetch(_local_mnist(), mirrors=server.url)
        waited = time.monotonic() - began
    assert str(_fetch.lock_path(target)) in str(info.value)
    assert 2.0 < waited < 10
    err = capfd.readouterr().err
    assert err.count("fastidx: waiting for another process downloading mnist/train-images-idx3-ubyte.gz") == 1
    assert server.total_requests() == 0


def test_ctrl_c_mid_download_leaves_nothing(fetch_env, server, tmp_path):
    server.add_dir("/mnist", MNIST_DIR)
    server.fault(TRAIN_IMAGES, rate=2e6)
    child = start_child(tmp_path, "interrupted", server.url, None)
    try:
        wait_for(lambda: server.get(TRAIN_IMAGES).bytes_sent > 500_000, 30, "the download to start")
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=20)
    finally:
        child.kill()
    assert child.returncode != 0 and "KeyboardInterrupt" in err
    directory = fetch_env / "mnist"
    assert leftovers(directory) == []
    assert not (directory / "train-images-idx3-ubyte.gz").exists()


def test_a_full_disk_is_reported_not_retried(fetch_env, server, tmp_path):
    # RLIMIT_FSIZE makes writes past 1 MB fail with EFBIG, as a full disk fails them with ENOSPC.
    server.add_dir("/mnist", MNIST_DIR)
    script = "import resource, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); " \
             "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))\n" + CHILD
    child = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "ready"), "-", server.url],
        env=child_env(), capture_output=True, text=True, timeout=60,
    )
    assert child.returncode != 0
    assert "CacheDirError" in child.stderr and "File too large" in child.stderr
    assert str(fetch_env / "mnist") in child.stderr
    assert server.get(TRAIN_IMAGES).requests == 1  # neither retried nor tried elsewhere
    assert leftovers(fetch_env / "mnist") == []


HOLDER = textwrap.dedent(
    """
    import sys, time, filelock
    lock = filelock.FileLock(sys.argv[1])
    lock.acquire()
    print("locked", flush=True)
    time.sleep(60)
    """
)


def _local_mnist() -> registry.DatasetSpec:
    import dataclasses

    return dataclasses.replace(
        MNIST, files={r: dataclasses.replace(f, urls=()) for r, f in MNIST.files.items()}
    )

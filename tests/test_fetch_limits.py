"""fetch() against mirrors that trickle, never answer, ask to wait, resume wrongly or send files only
Python's gzip accepts; settings that make no sense; one-line failure messages; mirror syntax.

Limits are set small through the environment (FASTIDX_STALL_TIMEOUT, FASTIDX_MIN_RATE,
FASTIDX_TIMEOUT), so every test runs in a few seconds; assertions are about outcomes (which mirror
served, how many requests each got), never about elapsed time.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import logging
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

import fastidx
from fastidx import _fetch, registry
from fastidx._fetch import transport as _transport
from fastidx._errors import CacheWarning, ChecksumError, DatasetNotFoundError, DownloadError
from http_server import (  # noqa: F401 (fixtures)
    MNIST_DIR,
    fetch_env,
    gunzip_sha256,
    leftovers,
    needs_shared_data,
    server,
    silent_servers,
)
from test_fetch import local_spec, small_dataset

MNIST = registry.get("mnist")
LABELS = "train-labels-idx1-ubyte.gz"


@pytest.fixture
def fast_limits(monkeypatch):
    monkeypatch.setenv("FASTIDX_STALL_TIMEOUT", "0.5")
    monkeypatch.setenv("FASTIDX_MIN_RATE", "2000")


def kmnist(tmp_path: Path, server, prefix: str = "", counts=(5, 3)) -> registry.DatasetSpec:
    spec = small_dataset("kmnist", tmp_path / "files" / "kmnist", counts)
    server.add_dir(f"{prefix}/kmnist", tmp_path / "files" / "kmnist")
    return spec


def served_from(cache: Path, name: str) -> str:
    return json.loads((cache / _fetch.MANIFEST_NAME).read_text())["files"][name]["url"]


# --- item 3: trickles and the total deadline ----------------------------------------------------------


def test_a_trickling_mirror_is_left_for_the_next(fetch_env, server, tmp_path, fast_limits):
    spec = kmnist(tmp_path, server, "/slow")
    kmnist(tmp_path, server, "/good")
    slow = "/slow/kmnist/t10k-labels-idx1-ubyte.gz"
    server.fault(slow, trickle=0.1, trickle_times=100)  # one byte every 0.1 s: far below 2000 B/s
    files = _fetch.fetch(spec, mirrors=[server.url + "/slow", server.url + "/good"])
    assert served_from(fetch_env, "kmnist/t10k-labels-idx1-ubyte.gz").startswith(server.url + "/good")
    # The stalled body was resumed once (MAX_STALLS = 2 attempts), then the next mirror was tried.
    assert server.get(slow).requests == _transport.MAX_STALLS
    assert server.get("/good/kmnist/t10k-labels-idx1-ubyte.gz").requests == 1
    assert files["test_labels"].read_bytes() == (tmp_path / "files" / "kmnist" / "t10k-labels-idx1-ubyte.gz").read_bytes()


def test_the_whole_download_is_bounded_by_fastidx_timeout(fetch_env, server, tmp_path, monkeypatch):
    monkeypatch.setenv("FASTIDX_TIMEOUT", "1")
    monkeypatch.setenv("FASTIDX_MIN_RATE", "100")
    spec = kmnist(tmp_path, server, counts=(60, 3))  # train images: 47 kB of random bytes
    path = "/kmnist/train-images-idx3-ubyte.gz"
    server.fault(path, rate=10_000)  # fast enough for the rate, too slow to finish in 1 s
    with pytest.raises(DownloadError) as info:
        _fetch.fetch(spec, mirrors=server.url)
    message = str(info.value)
    assert "FASTIDX_TIMEOUT (1 s) ran out" in message
    assert "train-images-idx3-ubyte.gz" in message
    assert server.get(path).requests == 1
    assert leftovers(fetch_env / "kmnist") == []


@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan", "1e999", "soon"])
def test_fastidx_timeout_must_be_a_positive_finite_number(fetch_env, server, tmp_path, monkeypatch, value):
    spec = kmnist(tmp_path, server)
    monkeypatch.setenv("FASTIDX_TIMEOUT", value)
    with pytest.raises(ValueError, match="FASTIDX_TIMEOUT"):
        _fetch.fetch(spec, mirrors=server.url)
    assert server.total_requests() == 0


# --- item 4: mirrors that never answer, Retry-After ----------------------------------------------------


def notices(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "fastidx._fetch" and r.levelno >= logging.WARNING]


def test_a_mirror_that_never_answers_is_skipped_after_one_try(
    fetch_env, server, tmp_path, silent_servers, fast_limits, caplog
):
    silent = silent_servers()
    spec = kmnist(tmp_path, server)
    files = _fetch.fetch(spec, mirrors=[silent.url, server.url])
    assert set(files) == set(registry.ROLES)
    assert silent.connections == 1  # tried for the first file, skipped for the other three
    assert server.total_requests() == 4
    assert notices(caplog) == [f"fastidx: {silent.url}: no answer within 0.5 s; trying {server.url}"]


CHILD = """
import sys
from fastidx import _fetch
from test_fetch import small_dataset
from pathlib import Path
spec = small_dataset("kmnist", Path(sys.argv[1]))
try:
    _fetch.fetch(spec, mirrors=sys.argv[2:])
except Exception as exc:
    print(type(exc).__name__)
"""


def test_without_logging_configured_the_notice_is_one_line_on_stderr(
    fetch_env, server, tmp_path, silent_servers, fast_limits
):
    silent = silent_servers()
    kmnist(tmp_path, server)
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "files" / "kmnist"), silent.url, server.url],
        capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
    )
    assert child.stdout == "" and child.returncode == 0
    assert child.stderr.splitlines() == [f"fastidx: {silent.url}: no answer within 0.5 s; trying {server.url}"]


def test_mirrors_behind_a_dropping_firewall_fail_fast_in_one_message(
    fetch_env, tmp_path, silent_servers, fast_limits, caplog
):
    mirrors = [silent_servers() for _ in range(3)]
    spec = small_dataset("kmnist", tmp_path / "unused")
    with pytest.raises(DownloadError) as info:
        _fetch.fetch(spec, mirrors=[m.url for m in mirrors])
    assert [m.connections for m in mirrors] == [1, 1, 1]
    message = str(info.value)
    assert "\n" not in message
    for file in spec.files.values():
        assert file.name in message
    assert info.value.missing == [f.name for f in spec.files.values()]
    for m in mirrors:
        assert f"{m.url}: no answer within 0.5 s" in message
    assert len(notices(caplog)) == 2  # one line per mirror left behind


def test_a_long_retry_after_sends_the_download_to_the_next_mirror(fetch_env, server, tmp_path):
    spec = kmnist(tmp_path, server, "/busy")
    kmnist(tmp_path, server, "/good")
    busy = "/busy/kmnist/t10k-images-idx3-ubyte.gz"
    server.fault(busy, status=503, status_times=1000, retry_after="120")
    _fetch.fetch(spec, mirrors=[server.url + "/busy", server.url + "/good"])
    assert server.get(busy).statuses == [503]
    assert served_from(fetch_env, "kmnist/t10k-images-idx3-ubyte.gz").startswith(server.url + "/good")


def test_a_short_retry_after_is_honoured(fetch_env, server, tmp_path):
    spec = kmnist(tmp_path, server)
    path = "/kmnist/t10k-images-idx3-ubyte.gz"
    server.fault(path, status=503, status_times=1, retry_after="0.2")
    _fetch.fetch(spec, mirrors=server.url)
    assert server.get(path).statuses == [503, 200]


# --- item 16: a resume that returns the wrong bytes -------------------------------------------------


def test_a_wrong_resume_is_fetched_again_from_byte_0(fetch_env, server, tmp_path):
    spec = kmnist(tmp_path, server, counts=(40, 3))
    path = "/kmnist/train-images-idx3-ubyte.gz"
    server.fault(path, drop_after=10_000, drop_times=1, drop_mode="close", corrupt_ranges=True)
    files = _fetch.fetch(spec, mirrors=server.url)
    assert hashlib.sha256(files["train_images"].read_bytes()).hexdigest() == spec.files["train_images"].sha256
    stats = server.get(path)
    assert stats.statuses == [200, 206, 200]
    assert stats.ranges == [None, "bytes=10000-", None]


def test_a_mirror_whose_whole_file_is_wrong_too_is_refused(fetch_env, server, tmp_path):
    spec = kmnist(tmp_path, server, counts=(40, 3))
    path = "/kmnist/train-images-idx3-ubyte.gz"
    server.fault(path, drop_after=10_000, drop_times=1, drop_mode="close", flip_bit=8 * 20_000)
    with pytest.raises(ChecksumError):
        _fetch.fetch(spec, mirrors=server.url)
    assert server.get(path).ranges == [None, "bytes=10000-", None]  # one retry from 0, no more
    assert leftovers(fetch_env / "kmnist") == []


# --- item 15: one definition of a valid file ----------------------------------------------------------


def gzip_with_bad_header_crc(raw: bytes) -> bytes:
    """A gzip member with FHCRC set and a wrong header CRC-16: Python's gzip ignores it, zlib not."""
    header = b"\x1f\x8b\x08\x02" + struct.pack("<I", 0) + b"\x00\xff"
    header += struct.pack("<H", (zlib.crc32(header) & 0xFFFF) ^ 0x5555)
    body = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = body.compress(raw) + body.flush()
    return header + deflated + struct.pack("<II", zlib.crc32(raw), len(raw) & 0xFFFFFFFF)


@needs_shared_data
def test_download_verification_and_the_loader_agree_on_a_bad_gzip_header_crc(fetch_env, server, tmp_path):
    raw = gzip.decompress((MNIST_DIR / LABELS).read_bytes())
    bad = tmp_path / "bad" / LABELS
    bad.parent.mkdir()
    bad.write_bytes(gzip_with_bad_header_crc(raw))
    assert gzip.decompress(bad.read_bytes()) == raw  # Python's gzip module accepts it
    try:
        fastidx.read_idx(bad)
        loader_accepts = True
    except fastidx.IDXError:
        loader_accepts = False
    server.add_dir("/mnist", MNIST_DIR)
    server.add_file(f"/mnist/{LABELS}", bad)
    if loader_accepts:  # then the download is genuine, and loads it without a second download
        files = _fetch.fetch(local_spec(), mirrors=server.url)
        assert fastidx.read_idx(files["train_labels"]).shape == (60000,)
        return
    with pytest.raises(ChecksumError, match="fastidx cannot read it"):
        _fetch.fetch(local_spec(), mirrors=server.url)
    assert not (fetch_env / "mnist" / LABELS).exists()
    assert leftovers(fetch_env / "mnist") == []


# --- item 12: a hostile manifest --------------------------------------------------------------------


def test_a_deeply_nested_manifest_is_treated_as_damaged(fetch_env, server, tmp_path):
    spec = kmnist(tmp_path, server)
    files = _fetch.fetch(spec, mirrors=server.url)
    manifest = fetch_env / _fetch.MANIFEST_NAME
    manifest.write_text('{"version": 1, "files": ' + "[" * 200_000 + "]" * 200_000 + "}")
    server.reset_stats()
    assert _fetch.fetch(spec, mirrors=server.url) == files  # re-verified, nothing downloaded
    assert server.total_requests() == 0
    assert set(json.loads(manifest.read_text())["files"]) == {f"kmnist/{p.name}" for p in files.values()}


# --- item 19: offline, a damaged cached file is kept aside -------------------------------------------


def test_offline_a_damaged_file_is_moved_aside_with_advice(fetch_env, server, tmp_path, monkeypatch):
    spec = kmnist(tmp_path, server)
    files = _fetch.fetch(spec, mirrors=server.url)
    victim = files["train_labels"]
    damaged = b"\x1f\x8b" + bytes(30)
    victim.write_bytes(damaged)
    monkeypatch.setenv("FASTIDX_OFFLINE", "1")
    with pytest.warns(CacheWarning) as warned, pytest.raises(DatasetNotFoundError) as info:
        _fetch.fetch(spec, mirrors=server.url)
    aside = victim.with_name(victim.name + ".damaged")
    assert aside.read_bytes() == damaged and not victim.exists()
    (warning,) = warned
    assert warning.filename == __file__  # points at the caller's line, not inside fastidx
    text = str(warning.message)
    assert str(victim) in text and aside.name in text and "offline" in text
    assert "will be fetched again" not in text
    assert info.value.missing == [victim.name]
    assert server.total_requests() == 4  # the first fetch only


# --- item 20: one short line listing every missing file --------------------------------------------


def test_a_failed_download_is_one_short_line_naming_every_file_and_the_fixes(fetch_env, server, tmp_path):
    spec = small_dataset("kmnist", tmp_path / "unused")  # the server has no such files: 404s
    with pytest.raises(DownloadError) as info:
        _fetch.fetch(spec, mirrors=[server.url + "/a", server.url + "/b"])
    message = str(info.value)
    assert "\n" not in message and len(message) < 500, message
    for file in spec.files.values():
        assert file.name in message
    for fix in ("--mirror", "mirrors=", "FASTIDX_MIRROR", "path="):
        assert fix in message
    assert "HTTP 404" in message
    assert len(info.value.details) == 8  # two mirrors x four files, for the log and the curious


# --- item 21: one rule for mirrors ---------------------------------------------------------------------


def test_a_plain_directory_is_a_mirror_everywhere(fetch_env, tmp_path, monkeypatch):
    spec = small_dataset("kmnist", tmp_path / "mirror" / "kmnist")
    directory = tmp_path / "mirror"
    files = _fetch.fetch(spec, mirrors=str(directory), offline=True)
    assert served_from(fetch_env, "kmnist/t10k-labels-idx1-ubyte.gz") == (directory / "kmnist" / "t10k-labels-idx1-ubyte.gz").as_uri()
    monkeypatch.setenv("FASTIDX_MIRROR", str(directory))
    assert _fetch.fetch(spec, cache_dir=tmp_path / "c2", offline=True).keys() == files.keys()
    assert _fetch.fetch(spec, cache_dir=tmp_path / "c3", mirrors=[directory], offline=True).keys() == files.keys()


def test_several_mirrors_are_separated_by_whitespace_or_commas(fetch_env, tmp_path, monkeypatch):
    directory = tmp_path / "mirror"
    directory.mkdir()
    monkeypatch.setenv("FASTIDX_MIRROR", f"http://a.example/x,{directory} , https://b.example/")
    assert _fetch.mirror_bases("http://c.example  http://d.example/") == [
        "http://c.example", "http://d.example", "http://a.example/x", directory.resolve().as_uri(), "https://b.example",
    ]
    monkeypatch.setenv("FASTIDX_MIRROR", "http://a.example/x,no-such-dir")
    with pytest.raises(ValueError, match="'no-such-dir' \\(from FASTIDX_MIRROR\\)"):
        _fetch.mirror_bases()


def test_a_directory_with_spaces_is_one_mirror(fetch_env, tmp_path):
    directory = tmp_path / "my mirror"
    directory.mkdir()
    assert _fetch.mirror_bases(str(directory)) == [directory.resolve().as_uri()]


# --- status() and remove() ---------------------------------------------------------------------------


def test_status_reports_without_writing_and_remove_deletes_only_what_fetch_made(fetch_env, server, tmp_path):
    spec = kmnist(tmp_path, server)
    assert {s.state for s in _fetch.status(spec)} == {"missing"}
    files = _fetch.fetch(spec, mirrors=server.url)
    report = _fetch.status(spec)
    assert [(s.role, s.state, s.path) for s in report] == [(r, "verified", files[r]) for r in registry.ROLES]
    files["test_images"].write_bytes(b"junk")
    manifest = (fetch_env / _fetch.MANIFEST_NAME).read_bytes()
    states = {s.role: s.state for s in _fetch.status(spec)}
    assert states["test_images"] == "unverified"
    assert {s.role: s.state for s in _fetch.status(spec, verify=True)}["test_images"] == "damaged"
    assert (fetch_env / _fetch.MANIFEST_NAME).read_bytes() == manifest  # status writes nothing
    assert files["test_images"].read_bytes() == b"junk"  # nor repairs anything

    # remove(): the dataset's files and its leftovers; a symlink as a link; nothing else.
    outside = tmp_path / "outside.gz"
    outside.write_bytes(b"keep me")
    files["train_labels"].unlink()
    files["train_labels"].symlink_to(outside)
    (fetch_env / "kmnist" / "notes.txt").write_text("mine")
    removed = _fetch.remove(spec)
    assert sorted(p.name for p in removed) == sorted(f.name for f in spec.files.values())
    assert outside.read_bytes() == b"keep me"
    assert sorted(p.name for p in (fetch_env / "kmnist").iterdir() if not p.name.endswith(".lock")) == ["notes.txt"]
    assert {s.state for s in _fetch.status(spec)} == {"missing"}
    entries = json.loads((fetch_env / _fetch.MANIFEST_NAME).read_text())["files"]
    assert not any(k.startswith("kmnist/") for k in entries)


# --- item 2: nothing is written through a symlink -------------------------------------------------


def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(fetch_env, server, tmp_path):
    from fastidx._errors import CacheDirError

    spec = kmnist(tmp_path, server)
    victim = tmp_path / "precious.txt"
    victim.write_text("do not truncate me")
    lock = fetch_env / "kmnist" / ".t10k-labels-idx1-ubyte.gz.lock"
    lock.parent.mkdir(parents=True)
    lock.symlink_to(victim)
    with pytest.raises(CacheDirError, match=str(lock)):
        _fetch.fetch(spec, mirrors=server.url)
    assert victim.read_text() == "do not truncate me"


def test_symlinks_in_the_cache_are_replaced_or_refused_never_written_through(fetch_env, server, tmp_path):
    from fastidx._errors import CacheDirError

    spec = kmnist(tmp_path, server)
    outside = tmp_path / "outside"
    outside.mkdir()
    # The manifest and a dataset file planted as symlinks: replaced as links, targets untouched.
    (outside / "manifest").write_text("{}")
    (outside / "labels").write_bytes(b"junk")
    fetch_env.mkdir()
    (fetch_env / _fetch.MANIFEST_NAME).symlink_to(outside / "manifest")
    (fetch_env / "kmnist").mkdir()
    (fetch_env / "kmnist" / "t10k-labels-idx1-ubyte.gz").symlink_to(outside / "labels")
    with pytest.warns(CacheWarning, match="damaged"):
        files = _fetch.fetch(spec, mirrors=server.url)
    assert (outside / "manifest").read_text() == "{}" and (outside / "labels").read_bytes() == b"junk"
    assert not files["test_labels"].is_symlink() and not (fetch_env / _fetch.MANIFEST_NAME).is_symlink()
    # The manifest's lock planted as a symlink: refused, not written through.
    (fetch_env / ".fetch-manifest.json.lock").unlink(missing_ok=True)
    (fetch_env / ".fetch-manifest.json.lock").symlink_to(outside / "manifest")
    files["test_images"].write_bytes(b"changed")  # so that the next fetch must write the manifest
    with pytest.raises(CacheDirError, match="fetch-manifest.json.lock"):
        _fetch.fetch(spec, mirrors=server.url)
    assert (outside / "manifest").read_text() == "{}"
    # A dataset directory that is a symlink is refused for writing (a warm load may still read it).
    (fetch_env / ".fetch-manifest.json.lock").unlink()
    other = tmp_path / "c2"
    other.mkdir()
    (other / "kmnist").symlink_to(outside, target_is_directory=True)
    with pytest.raises(CacheDirError, match="symlink"):
        _fetch.fetch(spec, cache_dir=other, mirrors=server.url)
    assert sorted(p.name for p in outside.iterdir()) == ["labels", "manifest"]

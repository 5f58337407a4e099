"""A source file verified once is not hashed again: the SHA-256 the fetcher took when it verified
the file (at download or first sight) names the decoded cache's entries, as long as ``stat`` says
the file is as it was then and the verification was not racy (the file last changed too soon
before it, within the file system's timestamp granularity)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import numpy as np
import pytest

import fastidx
from fastidx import _cache, cache
from fastidx._cache import budget, hashing, identity, writer
from fastidx.datasets import mnist

TRAIN = "train-images-idx3-ubyte.gz"


@pytest.fixture
def home(mnist_home):
    return mnist_home


def file_sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def count_hashing(monkeypatch) -> list:
    """Record every source hashed by a cache build (a first load's HashingReader) or by itself."""
    calls = []
    reader, hash_and_record = hashing.HashingReader, identity.hash_and_record

    def counting_reader(path):
        calls.append(os.path.basename(path))
        return reader(path)

    def counting_hash(path, *args):
        calls.append(os.path.basename(path))
        return hash_and_record(path, *args)

    monkeypatch.setattr(hashing, "HashingReader", counting_reader)
    monkeypatch.setattr(identity, "hash_and_record", counting_hash)
    return calls


def first_sight_then_clear(home):
    arrays = mnist.load_data()  # verifies the copies (the manifest keeps their digests), builds
    _cache.wait_for_writers()
    cache.clear(cache_dir=home)
    return arrays


def test_the_manifest_keeps_the_digest_of_a_file_verified_by_its_content(home):
    first_sight_then_clear(home)
    files = json.loads((home / "fetch-manifest.json").read_text())["files"]
    for name in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        entry = files[f"mnist/{name}"]
        assert entry["sha256"] == file_sha256(home / "mnist" / name)
        assert "content_sha256" in entry  # these copies are not the official .gz bytes
        st = os.stat(home / "mnist" / name)
        assert entry["verified_ns"] >= max(st.st_mtime_ns, st.st_ctime_ns) - 10**9


def test_a_first_load_after_clear_does_not_hash_verified_sources(home, monkeypatch):
    (x, y), (xt, yt) = first_sight_then_clear(home)
    # The files were copied a moment before they were verified: trust the manifest at once.
    monkeypatch.setattr(identity, "RACY_NS", -(10**18))
    calls = count_hashing(monkeypatch)
    (x2, y2), (xt2, yt2) = mnist.load_data()
    _cache.wait_for_writers()
    assert calls == []
    for a, b in ((x, x2), (y, y2), (xt, xt2), (yt, yt2)):
        assert np.array_equal(a, b)
    entry = home / "decoded" / f"{file_sha256(home / 'mnist' / TRAIN)}.stored.fidx"
    assert entry.is_file()
    (x3, _), _ = mnist.load_data()  # from that entry
    assert np.array_equal(x3, x)
    assert all(r.ok for r in cache.verify(home))


def test_a_racy_verification_is_hashed_again(home, monkeypatch):
    first_sight_then_clear(home)
    monkeypatch.setattr(identity, "RACY_NS", 10**15)  # every verification counts as too soon
    monkeypatch.setattr(identity, "RACY_FINE_NS", 10**15)
    calls = count_hashing(monkeypatch)
    mnist.load_data()
    _cache.wait_for_writers()
    assert sorted(set(calls)) == sorted(p.name for p in (home / "mnist").iterdir())


def test_a_file_changed_since_its_verification_is_hashed_again(home, monkeypatch):
    (x, _), _ = first_sight_then_clear(home)
    monkeypatch.setattr(identity, "RACY_NS", -(10**18))
    calls = count_hashing(monkeypatch)
    same, _ = mnist.load("train", home / "mnist")  # path= into the root: the manifest answers too
    assert np.array_equal(same, x) and calls == []
    fastidx.write_idx(home / "mnist" / TRAIN, x[::-1].copy())  # no longer the verified file
    changed, _ = mnist.load("train", home / "mnist")
    assert np.array_equal(changed, x[::-1]) and calls == [TRAIN]


def manifest_with(root, key: str, **entry) -> None:
    (root / "fetch-manifest.json").write_text(json.dumps({"version": 1, "files": {key: entry}}))


def test_manifest_digest_trusts_only_an_unchanged_file_verified_in_time(tmp_path):
    path = tmp_path / "mnist" / "f.gz"
    path.parent.mkdir()
    path.write_bytes(b"x" * 100)
    st = os.stat(path)
    ident = identity.stat_of(st)
    facts = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino,
             "ctime_ns": st.st_ctime_ns}
    good = "ab" * 32
    late = max(st.st_mtime_ns, st.st_ctime_ns) + identity.RACY_NS + 1
    manifest_with(tmp_path, "mnist/f.gz", sha256=good, verified_ns=late, **facts)
    assert identity.manifest_digest(path, tmp_path, ident) == good
    manifest_with(tmp_path, str(path), sha256=good, verified_ns=late, **facts)  # outside the root
    assert identity.manifest_digest(path, tmp_path, ident) is None  # keyed relative to the root
    cases = [
        dict(facts, sha256=good, verified_ns=max(st.st_mtime_ns, st.st_ctime_ns)),  # racy
        dict(facts, sha256=good),  # no verification time (written by an older fastidx)
        dict(facts, sha256=good, verified_ns=late, ino=st.st_ino + 1),  # another file
        dict(facts, sha256=good, verified_ns=late, size=st.st_size + 1),
        dict(facts, sha256="../" * 21 + "x", verified_ns=late),  # not a digest: never a path
        dict(facts, sha256=good.upper(), verified_ns=late),
        dict(facts, content_sha256=good, verified_ns=late),  # only the decoded content's digest
    ]
    for entry in cases:
        manifest_with(tmp_path, "mnist/f.gz", **entry)
        assert identity.manifest_digest(path, tmp_path, ident) is None, entry
    (tmp_path / "fetch-manifest.json").write_text("[" * 100000)
    assert identity.manifest_digest(path, tmp_path, ident) is None


def test_the_racy_window_follows_the_timestamps_granularity():
    fine = [0, 0, 0, 1_795_720_719_984_686_030, 1_795_720_720_004_699_030]
    assert identity.racy_window(fine) == identity.RACY_FINE_NS < identity.RACY_NS
    for coarse in ([0, 0, 0, 1_795_720_719_000_000_000, 1_795_720_720_004_699_030],  # mtime: seconds
                   [0, 0, 0, 1_795_720_719_984_686_030, 1_795_720_720_010_000_000]):  # ctime: 10 ms
        assert identity.racy_window(coarse) == identity.RACY_NS
    assert identity.trusted(fine[4] + identity.RACY_FINE_NS + 1, fine)
    assert not identity.trusted(fine[4] + identity.RACY_FINE_NS, fine)


def test_a_cache_within_its_budget_is_not_pruned_after_a_write(tmp_path, monkeypatch):
    decoded = tmp_path / "decoded"
    decoded.mkdir()
    written = decoded / f"{'0' * 64}.stored.fidx"
    written.write_bytes(b"\0" * 1000)
    (decoded / f".{'1' * 64}.stored.fidx.abcdefabcdef.tmp").write_bytes(b"\0" * 5000)  # a temp
    calls = []
    monkeypatch.setattr(cache, "prune", lambda **kw: calls.append(kw))
    monkeypatch.setenv(budget.ENV_MAX_SIZE, "1000")
    writer.enforce_budget(written)
    assert calls == []  # 1000 bytes of entries fit (the temporary file does not count)
    monkeypatch.setenv(budget.ENV_MAX_SIZE, "999")
    writer.enforce_budget(written)
    assert len(calls) == 1 and calls[0]["keep"] == {written.name}

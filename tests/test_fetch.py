"""fetch(): downloads from a real local HTTP server with injected faults, verification, cache repair,
offline mode, mirrors, reuse of Keras/torchvision files, EMNIST's archive."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import random
import stat
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastidx import _fetch, registry
from fastidx._fetch import transport as _transport
from fastidx._fetch import verify as _verify
from fastidx._errors import (
    CacheDirError,
    CacheWarning,
    ChecksumError,
    DatasetNotFoundError,
    DownloadError,
)
from http_server import (  # fixtures fetch_env, server: conftest.py
    CANONICAL_DIR,
    MNIST_DIR,
    SHARED_DATA,
    gunzip_sha256,
    idx_bytes,
    leftovers,
    needs_shared_data,
    sha256_file,
)

MNIST = registry.get("mnist")
TRAIN_IMAGES = "/mnist/train-images-idx3-ubyte.gz"
TRAIN_LABELS = "/mnist/train-labels-idx1-ubyte.gz"


def local_spec(name: str = "mnist", **changes) -> registry.DatasetSpec:
    """The registry's spec without its internet URLs: only mirrors given in the test are used."""
    spec = registry.get(name)
    files = {role: dataclasses.replace(f, urls=()) for role, f in spec.files.items()}
    return dataclasses.replace(spec, files=files, **changes)


def assert_official_mnist(files: dict[str, Path]) -> None:
    assert set(files) == set(registry.ROLES)
    for role, path in files.items():
        assert path.name == MNIST.files[role].name
        assert gunzip_sha256(path) == MNIST.files[role].content_sha256


def write_gz(path: Path, raw: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw, mtime=0))
    return path


def small_idx(role: str, n: int, seed: int) -> bytes:
    rng = random.Random(seed)
    if role.endswith("images"):
        return idx_bytes(rng.randbytes(n * 28 * 28), (n, 28, 28))
    return idx_bytes(bytes(rng.randrange(10) for _ in range(n)), (n,))


def small_dataset(name: str, directory: Path, counts=(5, 3)) -> registry.DatasetSpec:
    """Small valid gz IDX files for dataset ``name`` in ``directory``, and a spec that matches them."""
    spec = registry.get(name)
    splits = {"train": counts[0], "test": counts[1]}
    files = {}
    for i, (role, file) in enumerate(spec.files.items()):
        raw = small_idx(role, splits[role.split("_")[0]], seed=i)
        path = write_gz(directory / file.name, raw)
        files[role] = dataclasses.replace(
            file, size=path.stat().st_size, sha256=sha256_file(path),
            content_sha256=hashlib.sha256(raw).hexdigest(), urls=(),
        )
    return dataclasses.replace(spec, files=files, splits=splits)


# --- riding out faults ------------------------------------------------------------------------------


@needs_shared_data
def test_rides_out_503s_and_a_dropped_connection(fetch_env, server):
    base = server.add_dir("/mnist", MNIST_DIR)
    server.fault(TRAIN_IMAGES, status_times=3, drop_after=3_000_000, drop_times=1, drop_mode="reset")
    server.fault(TRAIN_LABELS, status=502, status_times=2)
    files = _fetch.fetch(local_spec(), mirrors=server.url)
    assert_official_mnist(files)
    images = server.get(TRAIN_IMAGES)
    assert images.statuses == [503, 503, 503, 200, 206]
    assert images.bytes_sent <= 1.2 * (MNIST_DIR / "train-images-idx3-ubyte.gz").stat().st_size
    assert server.get(TRAIN_LABELS).statuses == [502, 502, 200]
    assert all(p.parent == fetch_env / "mnist" for p in files.values())
    assert leftovers(fetch_env / "mnist") == []
    assert base.startswith("http://127.0.0.1:")


@needs_shared_data
def test_resumes_with_range_after_a_drop(fetch_env, server):
    server.add_dir("/mnist", MNIST_DIR)
    size = (MNIST_DIR / "train-images-idx3-ubyte.gz").stat().st_size
    server.fault(TRAIN_IMAGES, drop_after=4_000_000, drop_times=2, drop_mode="close")
    files = _fetch.fetch(local_spec(), mirrors=server.url)
    assert_official_mnist(files)
    images = server.get(TRAIN_IMAGES)
    assert images.ranges == [None, "bytes=4000000-", "bytes=8000000-"]
    assert images.statuses == [200, 206, 206]
    assert images.bytes_sent == size  # each byte sent exactly once


@needs_shared_data
def test_server_that_ignores_range_is_handled(fetch_env, server):
    server.add_dir("/mnist", MNIST_DIR)
    size = (MNIST_DIR / "train-images-idx3-ubyte.gz").stat().st_size
    server.fault(TRAIN_IMAGES, drop_after=4_000_000, drop_times=1, drop_mode="close", ignore_range=True)
    files = _fetch.fetch(local_spec(), mirrors=server.url)
    assert_official_mnist(files)
    images = server.get(TRAIN_IMAGES)
    assert images.ranges == [None, "bytes=4000000-"]
    assert images.statuses == [200, 200]  # Range ignored: the client started again
    assert images.bytes_sent == 4_000_000 + size
    assert leftovers(fetch_env / "mnist") == []


@needs_shared_data
def test_read_timeout_is_retried(fetch_env, server, monkeypatch):
    monkeypatch.setenv("FASTIDX_STALL_TIMEOUT", "0.3")
    server.add_dir("/mnist", MNIST_DIR)
    server.fault(TRAIN_LABELS, stall=1.5, stall_times=1)
    files = _fetch.fetch(local_spec(), mirrors=server.url)
    assert_official_mnist(files)
    assert server.get(TRAIN_LABELS).requests == 2


@needs_shared_data
def test_gives_up_on_a_mirror_that_keeps_failing(fetch_env, server):
    server.add_dir("/mnist", MNIST_DIR)
    server.fault(TRAIN_LABELS, status_times=1000)
    with pytest.raises(DownloadError) as info:
        _fetch.fetch(local_spec(), mirrors=server.url)
    assert not isinstance(info.value, ChecksumError)
    message = str(info.value)
    assert "train-labels-idx1-ubyte.gz" in message and server.url in message
    assert "503" in message and "FASTIDX_MIRROR" in message
    assert server.get(TRAIN_LABELS).requests == _transport.MAX_FAILURES
    assert not (fetch_env / "mnist" / "train-labels-idx1-ubyte.gz").exists()
    assert leftovers(fetch_env / "mnist") == []


@needs_shared_data
def test_next_mirror_after_404_and_mirror_order(fetch_env, server, monkeypatch):
    server.add_dir("/b/mnist", MNIST_DIR)
    monkeypatch.setenv("FASTIDX_MIRROR", f"{server.url}/b")
    files = _fetch.fetch(local_spec(), mirrors=[f"{server.url}/a/"])
    assert_official_mnist(files)
    assert server.get("/a" + TRAIN_LABELS).statuses == [404]  # mirrors= first, then FASTIDX_MIRROR
    assert server.get("/b" + TRAIN_LABELS).statuses == [200]


def test_proxy_from_the_environment(fetch_env, server, tmp_path, monkeypatch):
    # The test server doubles as a forward proxy; mirror.invalid is never resolved by the client.
    spec = small_dataset("kmnist", tmp_path / "kmnist")
    server.add_dir("/kmnist", tmp_path / "kmnist")
    monkeypatch.setenv("http_proxy", server.url)
    files = _fetch.fetch(spec, mirrors="http://mirror.invalid")
    assert server.get("/kmnist/t10k-labels-idx1-ubyte.gz").proxied == 1
    assert sha256_file(files["test_labels"]) == spec.files["test_labels"].sha256


def test_mirror_must_be_a_url(fetch_env):
    with pytest.raises(ValueError, match="file://"):
        _fetch.fetch(local_spec(), mirrors="/some/directory")
    with pytest.raises(ValueError, match="ftp://x"):
        _fetch.fetch(local_spec(), mirrors=["ftp://x"])


# --- refusing bad bytes -----------------------------------------------------------------------------


@needs_shared_data
def test_one_flipped_bit_is_refused_every_time(fetch_env, server):
    server.add_dir("/mnist", MNIST_DIR)
    server.fault(TRAIN_LABELS, flip_bit=8 * 1000 + 3)
    tampered = hashlib.sha256(server.content(TRAIN_LABELS)).hexdigest()
    label_spec = MNIST.files["train_labels"]
    for _ in range(2):
        with pytest.raises(ChecksumError) as info:
            _fetch.fetch(local_spec(), mirrors=server.url)
        message = str(info.value)
        assert "train-labels-idx1-ubyte.gz" in message
        assert server.url + TRAIN_LABELS in message
        assert label_spec.sha256[:16] in message and tampered[:16] in message
        assert "deleted" in message
        assert not (fetch_env / "mnist" / "train-labels-idx1-ubyte.gz").exists()
        assert leftovers(fetch_env / "mnist") == []
        manifest = json.loads((fetch_env / _fetch.MANIFEST_NAME).read_text())
        assert "mnist/train-labels-idx1-ubyte.gz" not in manifest["files"]
    assert server.get(TRAIN_LABELS).requests == 2


def test_gzip_bomb_is_refused_without_decoding_it_all(fetch_env, server, tmp_path):
    spec = small_dataset("kmnist", tmp_path / "files")
    bomb = write_gz(tmp_path / "bomb" / "train-labels-idx1-ubyte.gz", idx_bytes(bytes(64 << 20), (64 << 20,)))
    server.add_dir("/kmnist", tmp_path / "files")
    server.add_file("/kmnist/train-labels-idx1-ubyte.gz", bomb)
    with pytest.raises(ChecksumError, match="decodes to more than 13 bytes"):  # stopped at 13 bytes
        _fetch.fetch(spec, mirrors=server.url)
    assert leftovers(fetch_env / "kmnist") == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bit=st.integers(min_value=0, max_value=8 * 4517 - 1))
@needs_shared_data
def test_a_flipped_bit_passes_only_if_the_content_is_still_official(tmp_path, bit):
    # Most flips are refused; a few (gzip header mtime/OS bytes, padding bits) leave the decoded
    # content official, and such a file is genuine.
    data = bytearray((MNIST_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes())
    data[bit // 8] ^= 1 << (bit % 8)
    path = tmp_path / f"flipped-{bit}.gz"
    path.write_bytes(data)
    spec = MNIST.files["test_labels"]
    # zlib's own gzip reader (which, like fastidx's decoder, checks header CRCs and flags) decides.
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        content = inflater.decompress(bytes(data))
        genuine = inflater.eof and not inflater.unused_data
        genuine = genuine and hashlib.sha256(content).hexdigest() == spec.content_sha256
    except zlib.error:
        genuine = False
    assert _verify.verify(path, spec, MNIST.decoded_size("test_labels")).ok == genuine
    if 10 <= bit // 8 < len(data) - 9:  # inside the deflate stream: always caught
        assert not genuine
    path.unlink()


# --- the cache ---------------------------------------------------------------------------------------


WARM_CHILD = """
import json, sys
from fastidx import _fetch
files = _fetch.fetch(sys.argv[1], mirrors=sys.argv[2])
heavy = ["fastidx._fetch.fetcher", "fastidx._fetch.verify", "fastidx._fetch.transport", "fastidx._lock",
         "fastidx._fetch.archive", "urllib.request", "http.client", "zipfile", "filelock"]
print(json.dumps({"files": {r: str(p) for r, p in files.items()}, "loaded": [m for m in heavy if m in sys.modules]}))
"""


def _snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_ino) for p in directory.rglob("*")}


@needs_shared_data
def test_warm_fetch_is_one_stat_per_file(fetch_env, server, tmp_path):
    """A warm fetch in a new process: no request, no hashing, no lock, no write, no download
    machinery imported (urllib, http.client, the decoder-based verifier, the lock module)."""
    spec = small_dataset("kmnist", tmp_path / "kmnist")
    server.add_dir("/kmnist", tmp_path / "kmnist")
    # The registry's KMNIST, served by the test server: the child uses the real spec.
    for role, file in registry.get("kmnist").files.items():
        server.add_file(f"/kmnist/{file.name}", tmp_path / "kmnist" / spec.files[role].name)
    first = _fetch.fetch(spec, mirrors=server.url)
    manifest = json.loads((fetch_env / _fetch.MANIFEST_NAME).read_text())["files"]
    entry = manifest["kmnist/train-images-idx3-ubyte.gz"]
    assert {"size", "mtime_ns", "ino", "ctime_ns", "sha256"} <= set(entry)
    # Make the real spec's hashes match by recording the files as verified for it.
    real = registry.get("kmnist")
    data = {"version": 1, "files": {}}
    for role, path in first.items():
        facts = dict(manifest[f"kmnist/{path.name}"], sha256=real.files[role].sha256)
        data["files"][f"kmnist/{path.name}"] = facts
    (fetch_env / _fetch.MANIFEST_NAME).write_text(json.dumps(data))
    server.reset_stats()
    before = _snapshot(fetch_env)
    out = subprocess.run([sys.executable, "-c", WARM_CHILD, "kmnist", server.url], capture_output=True, text=True,
                         check=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    result = json.loads(out.stdout)
    assert result["files"] == {r: str(p) for r, p in first.items()}
    assert result["loaded"] == []
    assert server.total_requests() == 0
    assert _snapshot(fetch_env) == before  # nothing written, no lock file created or touched


@needs_shared_data
def test_a_file_is_hashed_once_then_trusted_by_its_stat(fetch_env, server, monkeypatch):
    server.add_dir("/mnist", MNIST_DIR)
    first = _fetch.fetch(local_spec(), mirrors=server.url)
    server.reset_stats()
    verified = []
    real_verify = _verify.verify
    monkeypatch.setattr(_verify, "verify", lambda *a: verified.append(a[0]) or real_verify(*a))
    assert _fetch.fetch(local_spec(), mirrors=server.url) == first
    assert server.total_requests() == 0 and verified == []
    # A copy dropped into the cache by hand (a new inode): hashed once, at first sight, then trusted.
    victim = first["test_labels"]
    copy = victim.with_name("copy")
    copy.write_bytes(victim.read_bytes())
    os.replace(copy, victim)
    for _ in range(3):
        assert _fetch.fetch(local_spec(), mirrors=server.url) == first
    assert verified == [victim]
    assert server.total_requests() == 0


@needs_shared_data
@pytest.mark.parametrize("damage", ["truncate", "junk-same-size"])
def test_damaged_cache_is_repaired_with_a_warning(fetch_env, server, damage):
    server.add_dir("/mnist", MNIST_DIR)
    files = _fetch.fetch(local_spec(), mirrors=server.url)
    victim = files["train_images"]
    size = victim.stat().st_size
    if damage == "truncate":
        with open(victim, "r+b") as f:
            f.truncate(size // 2)
    else:
        stamp = victim.stat().st_mtime_ns
        victim.write_bytes(random.Random(1).randbytes(size))
        os.utime(victim, ns=(stamp + 10**9, stamp + 10**9))  # clocks are coarse: make the change visible
    server.reset_stats()
    with pytest.warns(CacheWarning, match="train-images-idx3-ubyte.gz is damaged"):
        again = _fetch.fetch(local_spec(), mirrors=server.url)
    assert again == files
    assert_official_mnist(again)
    assert server.get(TRAIN_IMAGES).requests == 1 and server.total_requests() == 1


@needs_shared_data
def test_corrupt_manifest_is_ignored_and_rebuilt(fetch_env, server):
    server.add_dir("/mnist", MNIST_DIR)
    files = _fetch.fetch(local_spec(), mirrors=server.url)
    manifest = fetch_env / _fetch.MANIFEST_NAME
    for junk in (b"{not json\xff", b"[1, 2]", b'{"version": 1, "files": 3}'):
        manifest.write_bytes(junk)
        assert _fetch.fetch(local_spec(), mirrors=server.url, offline=True) == files
        assert set(json.loads(manifest.read_text())["files"]) == {f"mnist/{p.name}" for p in files.values()}
    assert server.get(TRAIN_IMAGES).requests == 1


@needs_shared_data
def test_discard_deletes_and_refetches(fetch_env, server):
    server.add_dir("/mnist", MNIST_DIR)
    files = _fetch.fetch(local_spec(), mirrors=server.url)
    with pytest.warns(CacheWarning, match="could not be parsed; deleted it"):
        _fetch.discard(files["train_labels"])
    assert not files["train_labels"].exists()
    manifest = json.loads((fetch_env / _fetch.MANIFEST_NAME).read_text())
    assert "mnist/train-labels-idx1-ubyte.gz" not in manifest["files"]
    assert _fetch.fetch(local_spec(), mirrors=server.url) == files
    assert server.get(TRAIN_LABELS).requests == 2 and server.get(TRAIN_IMAGES).requests == 1


def test_unwritable_cache_dir_names_dir_and_variable(fetch_env, tmp_path, server):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(CacheDirError) as info:
        _fetch.fetch(local_spec(), cache_dir=blocker / "sub", mirrors=server.url)
    assert str(blocker / "sub") in str(info.value)
    assert "FASTIDX_HOME" in str(info.value)
    assert server.total_requests() == 0


# --- offline ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["env", "kwarg"])
def test_offline_with_an_empty_cache(fetch_env, server, monkeypatch, how):
    if how == "env":
        monkeypatch.setenv("FASTIDX_OFFLINE", "1")
    kwargs = {"offline": True} if how == "kwarg" else {}
    with pytest.raises(DatasetNotFoundError) as info:
        _fetch.fetch(local_spec(), mirrors=server.url, **kwargs)
    message = str(info.value)
    for file in MNIST.files.values():
        assert file.name in message
    assert str(fetch_env / "mnist") in message
    assert "FASTIDX_MIRROR" in message and "file://" in message
    assert ("FASTIDX_OFFLINE=1" if how == "env" else "offline=True") in message
    assert server.total_requests() == 0
    assert not (fetch_env / "mnist").exists()


@needs_shared_data
def test_offline_with_a_warm_cache(fetch_env, server, monkeypatch):
    server.add_dir("/mnist", MNIST_DIR)
    files = _fetch.fetch(local_spec(), mirrors=server.url)
    server.reset_stats()
    monkeypatch.setenv("FASTIDX_OFFLINE", "yes")
    assert _fetch.fetch(local_spec(), mirrors=server.url) == files
    assert _fetch.fetch("mnist") == files  # the real registry entry, mirrors and all: still no request
    assert server.total_requests() == 0


@needs_shared_data
def test_file_mirror_from_the_environment(fetch_env, monkeypatch):
    monkeypatch.setenv("FASTIDX_MIRROR", SHARED_DATA.resolve().as_uri())
    monkeypatch.setenv("FASTIDX_OFFLINE", "1")  # a file:// mirror is not the network
    files = _fetch.fetch(local_spec())
    assert_official_mnist(files)
    assert all(p.parent == fetch_env / "mnist" for p in files.values())
    manifest = json.loads((fetch_env / _fetch.MANIFEST_NAME).read_text())
    assert manifest["files"]["mnist/t10k-labels-idx1-ubyte.gz"]["url"].startswith("file:///")


# --- official files, other tools' caches -----------------------------------------------------------------


@needs_shared_data
def test_canonical_label_files_match_their_official_hash(fetch_env, server, tmp_path):
    server.add_dir("/mnist", MNIST_DIR)
    server.add_file(TRAIN_LABELS, CANONICAL_DIR / "mnist-train-labels-idx1-ubyte.gz")
    server.add_file("/mnist/t10k-labels-idx1-ubyte.gz", CANONICAL_DIR / "mnist-t10k-labels-idx1-ubyte.gz")
    files = _fetch.fetch(local_spec(), mirrors=server.url)
    assert sha256_file(files["train_labels"]) == MNIST.files["train_labels"].sha256
    entries = json.loads((fetch_env / _fetch.MANIFEST_NAME).read_text())["files"]
    label = entries["mnist/train-labels-idx1-ubyte.gz"]
    assert label["sha256"] == MNIST.files["train_labels"].sha256
    assert "content_sha256" not in label  # accepted on the compressed hash alone

    # Fashion-MNIST: the official labels, and images the test makes.
    fashion = small_dataset("fashion_mnist", tmp_path / "fashion")
    official = registry.get("fashion_mnist").files
    fashion = dataclasses.replace(fashion, files={
        **fashion.files,
        "train_labels": dataclasses.replace(official["train_labels"], urls=()),
        "test_labels": dataclasses.replace(official["test_labels"], urls=()),
    })
    server.add_dir("/fashion_mnist", tmp_path / "fashion")
    server.add_file("/fashion_mnist/train-labels-idx1-ubyte.gz", CANONICAL_DIR / "fashion-train-labels-idx1-ubyte.gz")
    server.add_file("/fashion_mnist/t10k-labels-idx1-ubyte.gz", CANONICAL_DIR / "fashion-t10k-labels-idx1-ubyte.gz")
    files = _fetch.fetch(fashion, mirrors=server.url)
    assert sha256_file(files["test_labels"]) == official["test_labels"].sha256
    assert gunzip_sha256(files["train_labels"]) == official["train_labels"].content_sha256


@needs_shared_data
def test_reuses_torchvision_files(fetch_env, server, tmp_path, monkeypatch, mnist_copy):
    root = tmp_path / "torchvision"
    raw = mnist_copy(root / "MNIST" / "raw")
    monkeypatch.setenv("FASTIDX_TORCHVISION_ROOT", str(root))
    files = _fetch.fetch(local_spec(), mirrors=server.url)
    assert files == {role: raw / f.name for role, f in MNIST.files.items()}
    assert server.total_requests() == 0
    assert not (fetch_env / "mnist").exists()  # nothing copied
    entries = json.loads((fetch_env / _fetch.MANIFEST_NAME).read_text())["files"]
    assert str(raw / "t10k-labels-idx1-ubyte.gz") in entries  # verified once...
    assert _fetch.fetch(local_spec(), mirrors=server.url) == files  # ...then trusted

    # A copy the loader could not parse is left alone, and fastidx downloads its own.
    server.add_dir("/mnist", MNIST_DIR)
    with pytest.warns(CacheWarning, match="left in place"):
        _fetch.discard(files["test_labels"])
    assert files["test_labels"].exists()
    again = _fetch.fetch(local_spec(), mirrors=server.url)
    assert again["test_labels"] == fetch_env / "mnist" / "t10k-labels-idx1-ubyte.gz"
    assert again["train_labels"] == files["train_labels"]
    assert server.total_requests() == 1


def test_reuses_keras_fashion_files(fetch_env, server, tmp_path):
    keras = tmp_path / "keras-home" / "datasets" / "fashion-mnist"
    spec = small_dataset("fashion_mnist", keras)  # a Keras cache holding (small) fashion files
    assert _fetch.fetch(spec, mirrors=server.url) == {r: keras / f.name for r, f in spec.files.items()}
    assert server.total_requests() == 0


@needs_shared_data
def test_keras_mnist_npz_only_when_no_idx_files(fetch_env, server, tmp_path, monkeypatch, mnist_copy):
    npz = tmp_path / "keras-home" / "datasets" / "mnist.npz"
    npz.parent.mkdir(parents=True)
    npz.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip: stands in for Keras's file
    pinned = dataclasses.replace(MNIST.keras_npz, size=npz.stat().st_size, sha256=sha256_file(npz), urls=())
    spec = local_spec(keras_npz=pinned)
    assert _fetch.fetch(spec, mirrors=server.url) == {"npz": npz}
    assert server.total_requests() == 0

    # An npz that is not Keras's pinned file is not used.
    with pytest.raises(DatasetNotFoundError):
        _fetch.fetch(local_spec(), offline=True)

    # IDX files available locally (here: torchvision's) win over the npz.
    root = tmp_path / "torchvision"
    mnist_copy(root / "MNIST" / "raw")
    monkeypatch.setenv("FASTIDX_TORCHVISION_ROOT", str(root))
    assert "npz" not in _fetch.fetch(spec, mirrors=server.url)


@pytest.fixture
def mnist_copy():
    """Copy the shared MNIST files (official label files) into a directory outside the repo."""

    def copy(directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        for file in MNIST.files.values():
            source = CANONICAL_DIR / f"mnist-{file.name}"
            if not source.exists():
                source = MNIST_DIR / file.name
            (directory / file.name).write_bytes(source.read_bytes())
        return directory

    return copy


# --- KMNIST and EMNIST on small files the tests make ------------------------------------------------


def test_kmnist(fetch_env, server, tmp_path):
    spec = small_dataset("kmnist", tmp_path / "kmnist")
    server.add_dir("/kmnist", tmp_path / "kmnist")
    files = _fetch.fetch(spec, mirrors=server.url + "/")
    for role, path in files.items():
        assert path == fetch_env / "kmnist" / spec.files[role].name
        assert sha256_file(path) == spec.files[role].sha256
    assert server.get("/kmnist/t10k-images-idx3-ubyte.gz").requests == 1
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(files["test_labels"].stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600


def emnist_archive(directory: Path, splits=("balanced", "letters")) -> tuple[Path, dict[str, bytes]]:
    """A small gzip.zip laid out like NIST's, and the decoded content of each member."""
    contents = {}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for s, split in enumerate(splits):
            spec = registry.get(f"emnist_{split}")
            for i, (role, file) in enumerate(spec.files.items()):
                raw = small_idx(role, 4 if role.startswith("train") else 2, seed=10 * s + i)
                contents[file.name] = raw
                archive.writestr(f"gzip/{file.name}", gzip.compress(raw, mtime=0))
            archive.writestr(f"gzip/emnist-{split}-mapping.txt", "0 48\n")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "gzip.zip"
    path.write_bytes(buffer.getvalue())
    return path, contents


def emnist_spec(split: str, zip_path: Path) -> registry.DatasetSpec:
    archive = dataclasses.replace(
        registry.EMNIST_ARCHIVE, size=zip_path.stat().st_size, sha256=sha256_file(zip_path), urls=())
    return dataclasses.replace(registry.get(f"emnist_{split}"), archive=archive, splits={"train": 4, "test": 2})


def test_emnist_archive(fetch_env, server, tmp_path):
    zip_path, contents = emnist_archive(tmp_path / "mirror" / "emnist")
    server.add_dir("/emnist", zip_path.parent)
    balanced = _fetch.fetch(emnist_spec("balanced", zip_path), mirrors=server.url)
    letters = _fetch.fetch(emnist_spec("letters", zip_path), mirrors=server.url)
    assert server.get("/emnist/gzip.zip").requests == 1  # one archive for every split
    for files in (balanced, letters):
        for path in files.values():
            assert path.parent == fetch_env / "emnist"
            assert gzip.decompress(path.read_bytes()) == contents[path.name]
    assert (fetch_env / "emnist" / "gzip.zip").is_file()

    # Warm: nothing fetched, nothing extracted.
    stamps = {p: p.stat().st_mtime_ns for p in balanced.values()}
    server.reset_stats()
    assert _fetch.fetch(emnist_spec("balanced", zip_path), mirrors=server.url, offline=True) == balanced
    assert {p: p.stat().st_mtime_ns for p in balanced.values()} == stamps

    # A member that fails to parse is extracted again from the cached archive, offline.
    with pytest.warns(CacheWarning):
        _fetch.discard(balanced["test_labels"])
    assert _fetch.fetch(emnist_spec("balanced", zip_path), offline=True) == balanced
    assert gzip.decompress(balanced["test_labels"].read_bytes()) == contents[balanced["test_labels"].name]

    # A member changed on disk is noticed and extracted again.
    victim = balanced["train_images"]
    victim.write_bytes(b"junk")
    with pytest.warns(CacheWarning, match="changed since it was extracted"):
        _fetch.fetch(emnist_spec("balanced", zip_path), offline=True)
    assert gzip.decompress(victim.read_bytes()) == contents[victim.name]
    assert server.total_requests() == 0
    assert leftovers(fetch_env / "emnist") == []


def test_emnist_offline_without_archive(fetch_env, tmp_path, server):
    zip_path, _ = emnist_archive(tmp_path / "mirror" / "emnist")
    with pytest.raises(DatasetNotFoundError) as info:
        _fetch.fetch(emnist_spec("letters", zip_path), mirrors=server.url, offline=True)
    message = str(info.value)
    assert "gzip.zip" in message and "emnist-letters-train-images-idx3-ubyte.gz" in message
    assert str(fetch_env / "emnist") in message
    assert server.total_requests() == 0


def test_emnist_tampered_archive_is_refused(fetch_env, tmp_path, server):
    zip_path, _ = emnist_archive(tmp_path / "mirror" / "emnist")
    server.add_dir("/emnist", zip_path.parent)
    server.fault("/emnist/gzip.zip", flip_bit=800)
    with pytest.raises(ChecksumError, match="gzip.zip"):
        _fetch.fetch(emnist_spec("digits", zip_path), mirrors=server.url)
    assert not (fetch_env / "emnist" / "gzip.zip").exists()
    assert leftovers(fetch_env / "emnist") == []


def test_emnist_reuses_torchvision_archive(fetch_env, tmp_path, server, monkeypatch):
    root = tmp_path / "torchvision"
    zip_path, contents = emnist_archive(root / "EMNIST" / "raw")
    monkeypatch.setenv("FASTIDX_TORCHVISION_ROOT", str(root))
    files = _fetch.fetch(emnist_spec("letters", zip_path), mirrors=server.url)
    assert server.total_requests() == 0
    assert not (fetch_env / "emnist" / "gzip.zip").exists()  # the archive is read where it is
    assert gzip.decompress(files["train_labels"].read_bytes()) == contents[files["train_labels"].name]


# --- progress ---------------------------------------------------------------------------------------


def test_progress_on_stderr_only_when_asked_or_a_tty(fetch_env, server, tmp_path, capsys):
    spec = small_dataset("kmnist", tmp_path / "kmnist")
    server.add_dir("/kmnist", tmp_path / "kmnist")
    _fetch.fetch(spec, mirrors=server.url)  # stderr is not a terminal here
    assert capsys.readouterr().err == ""
    _fetch.fetch(spec, mirrors=server.url, cache_dir=tmp_path / "c2", progress=False)
    assert capsys.readouterr().err == ""
    _fetch.fetch(spec, mirrors=server.url, cache_dir=tmp_path / "c3", progress=True)
    err = capsys.readouterr().err
    assert "t10k-images-idx3-ubyte.gz" in err and "100%" in err


@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
@pytest.mark.parametrize("pipelined", [False, True])
def test_content_hash_is_the_hash_of_the_decoded_file(tmp_path, monkeypatch, dtype, pipelined,
                                                      sha256_threads):
    """Large payloads are hashed on a second thread while the next block decodes: the digest is
    the SHA-256 of the gunzipped file either way, for every IDX dtype (stored big-endian)."""
    import threading

    import numpy as np

    import fastidx

    monkeypatch.setattr(_verify, "_BLOCK", 64)  # many blocks, a short last one
    monkeypatch.setattr(_verify, "_PIPELINE", 0 if pipelined else 1 << 40)
    threads = sha256_threads
    rng = np.random.default_rng(7)
    array = (rng.integers(-100, 100, (37, 5, 3)) * 1.5).astype(np.dtype(dtype).newbyteorder("="))
    path = tmp_path / "a.gz"
    fastidx.write_idx(path, array)
    digest, problem = _verify.content_sha256(path, 1 << 30)
    assert problem == "" and digest == hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()
    payload = set(threads[1:])  # the first update is the header
    assert payload == ({"fastidx-verify"} if pipelined else {threading.current_thread().name})
    assert not [t for t in threading.enumerate() if t.name == "fastidx-verify"]


def test_a_truncated_file_stops_the_pipelined_hash(tmp_path, monkeypatch):
    import threading

    import numpy as np

    import fastidx

    monkeypatch.setattr(_verify, "_BLOCK", 4096)
    monkeypatch.setattr(_verify, "_PIPELINE", 0)
    path = tmp_path / "a.gz"
    fastidx.write_idx(path, np.random.default_rng(1).integers(0, 256, (500, 28, 28), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    digest, problem = _verify.content_sha256(path, 1 << 30)
    assert digest is None and "fastidx cannot read it" in problem
    assert not [t for t in threading.enumerate() if t.name == "fastidx-verify"]

"""Cache paths on a cluster: network file systems, stable relative paths, settings for workers."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest

import fastidx
import fastidx.ray
from fastidx import _cache, _cluster, _fetch
from fastidx.datasets import SAMPLE_DIR, mnist
from http_server import MNIST_DIR, needs_shared_data

FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def _mounts(tmp_path, point, kind):
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "/dev/vda / ext4 rw,relatime 0 0\n"
        "proc /proc proc rw 0 0\n"
        f"server:/export {str(point).replace(' ', chr(92) + '040')} {kind} rw,vers=4.2 0 0\n"
    )
    return str(mounts)


@pytest.fixture(autouse=True)
def _fresh_memo(monkeypatch):
    monkeypatch.setattr(_cluster, "_fs", {})
    monkeypatch.setattr(_cluster, "_warned", set())
    monkeypatch.setattr(_cluster, "_resolved", {})


@pytest.mark.parametrize("kind", ["nfs", "nfs4", "cifs", "smb3", "lustre", "fuse.sshfs", "ceph"])
def test_network_file_systems_are_recognised_by_their_mount(tmp_path, kind):
    shared = tmp_path / "shared home"
    (shared / "cache").mkdir(parents=True)
    mounts = _mounts(tmp_path, shared, kind)
    assert _cluster.fs_type(shared / "cache" / "not yet" / "there", mounts) == kind
    assert _cluster.is_network(shared / "cache", mounts)
    assert not _cluster.is_network(tmp_path, mounts)  # the ext4 root


def test_the_longest_mount_point_wins(tmp_path):
    inner = tmp_path / "nfs" / "local-scratch"
    inner.mkdir(parents=True)
    mounts = _mounts(tmp_path, tmp_path / "nfs", "nfs")
    with open(mounts, "a") as f:
        f.write(f"/dev/sdb {inner} xfs rw 0 0\n")
    assert _cluster.fs_type(inner, mounts) == "xfs"
    assert _cluster.fs_type(tmp_path / "nfs", mounts) == "nfs"


def test_this_machines_cache_is_not_on_a_network_fs(tmp_path):
    assert _cluster.fs_type(tmp_path) is not None
    assert _cluster.node_local(tmp_path / "decoded", "the decoded cache") == tmp_path / "decoded"


def test_a_decoded_cache_on_nfs_moves_to_node_local_storage_with_one_warning(
        tmp_path, monkeypatch):
    shared = tmp_path / "nfs-home"
    shared.mkdir()
    monkeypatch.setattr(_cluster, "MOUNTS", _mounts(tmp_path, shared, "nfs"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "local-tmp"))
    (tmp_path / "local-tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    with pytest.warns(fastidx.ClusterWarning, match="network file system .nfs.") as record:
        directory = _cache.decoded_dir(shared)
        again = _cache.decoded_dir(shared)
    assert len(record) == 1 and "\n" not in str(record[0].message)
    assert directory == again and directory.name == "decoded"
    assert (tmp_path / "local-tmp") in directory.parents and directory.is_dir()
    assert oct(os.stat(_cluster.local_root()).st_mode & 0o777) == "0o700"
    with pytest.warns(fastidx.ClusterWarning, match="download locks"):
        lock = _fetch.lock_path(shared / "mnist" / "train-images-idx3-ubyte.gz")
    assert (tmp_path / "local-tmp") in lock.parents and lock.parent.is_dir()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per directory, not per file
        assert _fetch.lock_path(shared / "mnist" / "t10k-images-idx3-ubyte.gz").parent == lock.parent
    # Loading works end to end: dataset files read from the "NFS" directory, arrays cached locally.
    x, _ = mnist.load("train[:10]", path=SAMPLE_DIR, cache_dir=shared, mmap=True)
    assert x.shape == (10, 28, 28)
    assert not (shared / "decoded").exists()
    assert list(directory.glob("*.raw"))


def test_a_planted_local_root_is_refused(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / f"fastidx-{os.getuid()}")
    with pytest.raises(fastidx.CacheDirError, match="symlink"):
        _cluster.local_root()


def test_relative_paths_resolve_against_tunes_original_directory(tmp_path, monkeypatch):
    (tmp_path / "orig").mkdir()
    (tmp_path / "trial").mkdir()
    monkeypatch.chdir(tmp_path / "trial")
    monkeypatch.setenv("TUNE_ORIG_WORKING_DIR", str(tmp_path / "orig"))
    monkeypatch.setenv("FASTIDX_HOME", "cache")
    assert _cache.decoded_dir() == tmp_path / "orig" / "cache" / "decoded"
    import shutil

    shutil.copytree(SAMPLE_DIR, tmp_path / "orig" / "sample")
    x, _ = mnist.load("test", path="sample", cache=False)
    assert x.shape == (200, 28, 28)
    monkeypatch.delenv("TUNE_ORIG_WORKING_DIR")
    assert _cache.decoded_dir() == tmp_path / "trial" / "cache" / "decoded"


def test_runtime_env_carries_absolute_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FASTIDX_HOME", "rel/cache")
    monkeypatch.setenv("FASTIDX_MIRROR", "http://head:8000")
    monkeypatch.setenv("FASTIDX_OFFLINE", "")
    env = fastidx.ray.runtime_env({"pip": ["x"], "env_vars": {"A": "1"}}, FASTIDX_TIMEOUT=5)
    assert env["pip"] == ["x"]
    assert env["env_vars"] == {
        "A": "1", "FASTIDX_HOME": str(tmp_path / "rel" / "cache"),
        "FASTIDX_MIRROR": "http://head:8000", "FASTIDX_TIMEOUT": "5",
        "KERAS_HOME": os.environ["KERAS_HOME"],
    }


def test_core_never_imports_ray():
    code = ("import sys, fastidx.ray; from fastidx.datasets import mnist, SAMPLE_DIR; "
            "mnist.load('train[:5]', path=SAMPLE_DIR); print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "False"


RAY_WORKER = """
import os, sys, warnings, ray
ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)

@ray.remote
def load():
    import warnings
    from fastidx.datasets import mnist, SAMPLE_DIR
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mnist.load("train[:5]", path=SAMPLE_DIR)
        mnist.load("train[:5]", path=SAMPLE_DIR)
    return [str(w.message) for w in caught]

print(repr(ray.get(load.remote())))
ray.shutdown()
"""


def test_a_ray_worker_without_fastidx_home_says_so(tmp_path):
    pytest.importorskip("ray")
    import shutil
    import tempfile

    short = tempfile.mkdtemp(prefix="fxr", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k == "FASTIDX_PURE" or not k.startswith("FASTIDX_")}
    env.update(RAY_TMPDIR=short, RAY_AUTH_MODE="disabled", PYTHONWARNINGS="ignore",
               XDG_CACHE_HOME=str(tmp_path / "xdg"), RAY_ADDRESS="")
    try:
        run = subprocess.run([sys.executable, "-c", RAY_WORKER], env=env, capture_output=True,
                             text=True, timeout=300, cwd=tmp_path)
    finally:
        shutil.rmtree(short, ignore_errors=True)
    assert run.returncode == 0, run.stderr[-3000:]
    messages = eval(run.stdout.strip().splitlines()[-1])
    assert len(messages) == 1
    assert "FASTIDX_HOME is not set in this Ray worker" in messages[0]
    assert str(tmp_path / "xdg" / "fastidx") in messages[0]


@pytest.fixture
def in_a_tune_trial(tmp_path, monkeypatch):
    """A Tune trial's situation: the working directory is the trial's own, the search's directory
    is in ``TUNE_ORIG_WORKING_DIR``; offline, with an absolute cache directory."""
    (tmp_path / "orig").mkdir()
    (tmp_path / "trial").mkdir()
    monkeypatch.chdir(tmp_path / "trial")
    monkeypatch.setenv("TUNE_ORIG_WORKING_DIR", str(tmp_path / "orig"))
    monkeypatch.setenv("FASTIDX_HOME", str(tmp_path / "cache"))
    return tmp_path / "orig"


@needs_shared_data
def test_a_relative_mirror_directory_resolves_against_tunes_original_directory(in_a_tune_trial,
                                                                                monkeypatch):
    (in_a_tune_trial / "mirror").mkdir()
    os.symlink(MNIST_DIR, in_a_tune_trial / "mirror" / "mnist")
    monkeypatch.setenv("FASTIDX_MIRROR", "mirror")
    x, _ = mnist.load("test[:3]")
    assert x.shape == (3, 28, 28)
    from fastidx._fetch import settings

    assert (in_a_tune_trial / "mirror").as_uri() in settings.mirror_bases(mirrors="mirror")


@needs_shared_data
def test_relative_torchvision_root_and_keras_home_resolve_against_tunes_original_directory(
        in_a_tune_trial, monkeypatch):
    raw = in_a_tune_trial / "tv" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in FILES:
        os.symlink(MNIST_DIR / name, raw / name)
    monkeypatch.setenv("FASTIDX_TORCHVISION_ROOT", "tv")
    monkeypatch.setenv("FASTIDX_OFFLINE", "1")
    x, _ = mnist.load("test[:3]")  # found in torchvision's directory, no download
    assert x.shape == (3, 28, 28)
    monkeypatch.setenv("KERAS_HOME", "keras")
    from fastidx._fetch import elsewhere

    assert elsewhere.keras_datasets() == in_a_tune_trial / "keras" / "datasets"


def test_runtime_env_makes_a_local_mirror_directory_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m1").mkdir()
    monkeypatch.setenv("FASTIDX_MIRROR", "m1, https://mirror.example/data")
    env = fastidx.ray.runtime_env()["env_vars"]
    assert env["FASTIDX_MIRROR"] == f"{tmp_path / 'm1'} https://mirror.example/data"

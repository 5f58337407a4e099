"""``max_memory="auto"`` (and the default): the memory cgroup's limit, read from fake cgroup trees
(v1, v2, containers, no limit) and from a real cgroup where one can be created."""

import json
import os

import numpy as np
import pytest

from fastidx import _memlimit
from fastidx.cache import MemoryLimitError
from fastidx.datasets import SAMPLE_DIR, mnist

MiB = 1 << 20


def tree(root, files):
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def v1(root, *, limit, usage, inactive=0, path="/process_api/job", at=None):
    """A cgroup v1 memory hierarchy holding this process's cgroup ``path`` (files at ``at``)."""
    at = path if at is None else at
    cg = f"sys/fs/cgroup/memory{at}".rstrip("/")
    return tree(root, {
        "proc/self/cgroup": f"12:pids:/\n4:memory:{path}\n1:name=systemd:/\n0::/\n",
        f"{cg}/memory.limit_in_bytes": f"{limit}\n",
        f"{cg}/memory.usage_in_bytes": f"{usage}\n",
        f"{cg}/memory.stat": (f"cache 4096\nrss {usage}\ninactive_file {inactive}\n"
                              f"hierarchical_memory_limit {limit}\n"
                              f"total_inactive_file {inactive}\n"),
    })


def test_v1_limit_minus_usage_plus_inactive_page_cache(tmp_path):
    v1(tmp_path, limit=32 * MiB, usage=20 * MiB, inactive=3 * MiB)
    assert _memlimit.available(tmp_path) == (15 * MiB, 32 * MiB)


def test_v1_the_hierarchical_limit_of_an_ancestor_wins(tmp_path):
    v1(tmp_path, limit=1 << 62, usage=10 * MiB)
    stat = tmp_path / "sys/fs/cgroup/memory/process_api/job/memory.stat"
    stat.write_text(stat.read_text().replace(f"hierarchical_memory_limit {1 << 62}",
                                             f"hierarchical_memory_limit {64 * MiB}"))
    assert _memlimit.available(tmp_path) == (54 * MiB, 64 * MiB)


@pytest.mark.parametrize("limit", [9223372036854771712, 1 << 60])
def test_v1_unlimited_is_no_limit(tmp_path, limit):
    v1(tmp_path, limit=limit, usage=10 * MiB)
    assert _memlimit.available(tmp_path) is None


def test_v1_container_without_cgroup_namespace(tmp_path):
    # Docker without a cgroup namespace: /proc/self/cgroup names the host's path, but the
    # container sees its own cgroup at the mount point.
    v1(tmp_path, limit=48 * MiB, usage=8 * MiB, path="/docker/0123abcd", at="")
    assert _memlimit.available(tmp_path) == (40 * MiB, 48 * MiB)


def test_usage_above_the_limit_leaves_nothing(tmp_path):
    v1(tmp_path, limit=32 * MiB, usage=40 * MiB)
    assert _memlimit.available(tmp_path) == (0, 32 * MiB)


def v2(root, levels, *, path="/user.slice/job", inactive=0):
    """A cgroup v2 tree: ``levels`` maps a cgroup path to ``(memory.max, memory.current)``."""
    files = {"proc/self/cgroup": f"0::{path}\n", "sys/fs/cgroup/cgroup.controllers": "cpu memory\n"}
    for where, (limit, current) in levels.items():
        cg = f"sys/fs/cgroup{where}".rstrip("/")
        files[f"{cg}/memory.max"] = f"{limit}\n"
        files[f"{cg}/memory.current"] = f"{current}\n"
        files[f"{cg}/memory.stat"] = f"anon {current}\nfile 0\ninactive_file {inactive}\n"
    return tree(root, files)


def test_v2_memory_max_minus_current(tmp_path):
    v2(tmp_path, {"/user.slice/job": (32 * MiB, 12 * MiB)}, inactive=2 * MiB)
    assert _memlimit.available(tmp_path) == (22 * MiB, 32 * MiB)


def test_v2_the_tightest_ancestor_wins(tmp_path):
    v2(tmp_path, {"/user.slice/job": ("max", 12 * MiB), "/user.slice": (100 * MiB, 90 * MiB)})
    assert _memlimit.available(tmp_path) == (10 * MiB, 100 * MiB)


def test_v2_max_everywhere_is_no_limit(tmp_path):
    v2(tmp_path, {"/user.slice/job": ("max", 12 * MiB), "/user.slice": ("max", 90 * MiB)})
    assert _memlimit.available(tmp_path) is None


def test_v2_container_with_its_own_namespace(tmp_path):
    v2(tmp_path, {"": (256 * MiB, 56 * MiB)}, path="/")
    assert _memlimit.available(tmp_path) == (200 * MiB, 256 * MiB)


@pytest.mark.parametrize("files", [{}, {"proc/self/cgroup": "0::/\n"},
                                   {"proc/self/cgroup": "garbage\n4:memory:/gone\n"}])
def test_no_cgroup_files_is_no_limit(tmp_path, files):
    tree(tmp_path, files)
    assert _memlimit.available(tmp_path) is None


def test_auto_refuses_before_allocating_and_names_the_limit(tmp_path, monkeypatch):
    # 6.5 MiB available, 6 MiB of which are kept for working buffers: 0.5 MiB for the arrays.
    v1(tmp_path / "root", limit=32 * MiB, usage=25 * MiB + MiB // 2)
    monkeypatch.setattr(_memlimit, "_ROOT", str(tmp_path / "root"))
    for max_memory in ("auto", None):  # None, the default, is "auto"
        with pytest.raises(MemoryLimitError) as caught:
            mnist.load("train", path=SAMPLE_DIR, cache_dir=tmp_path, max_memory=max_memory)
        message = str(caught.value)
        assert "784,000 bytes" in message and "33,554,432 bytes (32 MiB, memory cgroup)" in message
        assert "mmap=True" in message and "iter_batches()" in message, message
    # The images were refused before their first build: only the labels (loaded first) are cached.
    assert len(list((tmp_path / "decoded").glob("*.fidx"))) == 1
    # What fits still loads, memory maps are not counted, and an explicit number overrides.
    x, _ = mnist.load("test", path=SAMPLE_DIR, cache_dir=tmp_path)
    assert x.shape == (200, 28, 28)
    x, _ = mnist.load("train", path=SAMPLE_DIR, cache_dir=tmp_path, mmap=True)
    assert x.shape == (1000, 28, 28)
    x, _ = mnist.load("train", path=SAMPLE_DIR, cache_dir=tmp_path, max_memory=10 * MiB)
    assert x.shape == (1000, 28, 28)


def test_no_limit_changes_nothing(tmp_path, monkeypatch):
    v1(tmp_path / "root", limit=9223372036854771712, usage=27 * MiB)
    monkeypatch.setattr(_memlimit, "_ROOT", str(tmp_path / "root"))
    (x, _), _ = mnist.load_data(path=SAMPLE_DIR, cache_dir=tmp_path, max_memory="auto")
    assert x.shape == (1000, 28, 28)


def test_a_real_cgroup_limit_is_read():
    from cgroup_runner import run_limited, unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    code = "import json, fastidx._memlimit as m; print(json.dumps(m.available()))"
    outcome = run_limited(code, 64 * MiB, env=dict(os.environ))
    assert outcome.ok, outcome.stderr
    free, limit = json.loads(outcome.stdout)
    assert limit == 64 * MiB
    assert 0 < free < 64 * MiB


def test_dirty_pages_are_bounded_only_under_a_limit(tmp_path, monkeypatch):
    data = bytes(range(256)) * 4096  # 1 MiB
    v1(tmp_path / "root", limit=32 * MiB, usage=16 * MiB)
    monkeypatch.setattr(_memlimit, "_ROOT", str(tmp_path / "root"))
    with open(tmp_path / "limited", "wb") as f:
        bound = _memlimit.DirtyBound(f)
        assert bound.window == 2 * MiB  # an eighth of the 16 MiB still allowed
        for _ in range(5):
            f.write(data)
            bound.wrote(len(data))
        assert bound.pending == MiB  # synced after 2 and 4 MiB
    assert (tmp_path / "limited").read_bytes() == data * 5
    monkeypatch.setattr(_memlimit, "_ROOT", str(tmp_path / "nothing"))
    with open(tmp_path / "free", "wb") as f:
        assert _memlimit.DirtyBound(f).window is None


@pytest.mark.parametrize("options", [dict(dtype="float64"), dict(normalize=True),
                                     dict(mean=0.1307, std=0.3081)])
def test_a_memory_map_is_built_through_small_buffers(tmp_path, options):
    # The uncompressed file of a conversion is written in pieces of RAW_PIECE_BYTES: building
    # the float64 map of the 784,000-byte sample takes one decoded frame and a 128 KiB buffer,
    # not a converted frame (6.3 MB in float64; 37.6 MB for a 1 MiB frame of a 32 MiB machine).
    import tracemalloc

    from fastidx import _cache

    mnist.load("train", path=SAMPLE_DIR, cache_dir=tmp_path)  # the frames entry
    _cache.wait_for_writers()
    tracemalloc.start()
    try:
        x, _ = mnist.load("train", path=SAMPLE_DIR, cache_dir=tmp_path, mmap=True, **options)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert x.shape == (1000, 28, 28) and x.dtype.kind == "f"
    assert peak < 784_000 + 2 * _cache.RAW_PIECE_BYTES, peak
    (reference, _), _ = mnist.load_data(path=SAMPLE_DIR, cache=False, **options)
    assert np.array_equal(x, reference)


def vm_flags(array: np.ndarray) -> list[str]:
    """The kernel's flags (``VmFlags`` of /proc/self/smaps) of the mapping holding ``array``."""
    address = array.__array_interface__["data"][0]
    inside = False
    with open("/proc/self/smaps") as smaps:
        lines = smaps.read().splitlines()
    for line in lines:
        head = line.split(None, 1)[0]
        if "-" in head and not head.endswith(":"):
            start, end = (int(x, 16) for x in head.split("-"))
            inside = start <= address < end
        elif inside and head == "VmFlags:":
            return line.split()[1:]
    raise AssertionError(f"no mapping holds {address:#x}")


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs Linux's /proc/self/smaps")
@pytest.mark.parametrize("limit, readahead_kb, advised", [
    (32 * MiB, 8192, True),     # four 8 MiB windows do not fit in the 16 MiB still allowed
    (32 * MiB, None, True),     # a window sysfs does not tell is not assumed small
    (32 * MiB, 128, False),     # four 128 KiB windows fit: the kernel's readahead is kept
    (None, 8192, False),        # no limit: nothing changes
])
def test_a_map_is_read_without_readahead_when_its_windows_do_not_fit(tmp_path, monkeypatch, limit,
                                                                    readahead_kb, advised):
    root = tmp_path / "root"
    v1(root, limit=limit or 9223372036854771712, usage=16 * MiB)
    dev = os.stat(tmp_path).st_dev
    if readahead_kb is not None:
        tree(root, {f"sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb": f"{readahead_kb}\n"})
    monkeypatch.setattr(_memlimit, "_ROOT", str(root))
    x, _ = mnist.load("train", path=SAMPLE_DIR, cache_dir=tmp_path, mmap=True, normalize=True)
    assert ("rr" in vm_flags(x)) == advised  # rr: MADV_RANDOM, no readahead on this mapping
    reference, _ = mnist.load("train", path=SAMPLE_DIR, cache=False, normalize=True)
    assert np.array_equal(x, reference)


def test_the_readahead_window_is_read_from_sysfs(tmp_path):
    dev = os.stat(tmp_path).st_dev
    name = f"{os.major(dev)}:{os.minor(dev)}"
    with open(tmp_path / "f", "wb") as f:
        assert _memlimit.readahead_bytes(f.fileno(), tmp_path / "root") is None
        tree(tmp_path / "root", {f"sys/dev/block/{name}/queue/read_ahead_kb": "512\n"})
        assert _memlimit.readahead_bytes(f.fileno(), tmp_path / "root") == 512 << 10
        tree(tmp_path / "root", {f"sys/class/bdi/{name}/read_ahead_kb": "8192\n"})
        assert _memlimit.readahead_bytes(f.fileno(), tmp_path / "root") == 8 << 20

"""The ``fastidx`` command, run as a subprocess (``python -m fastidx``) the way a user runs it.

Every test has its own empty cache (``fetch_env``), no route to the internet (a dead proxy) and
stdin closed, so nothing waits for input; downloads come from the fault-injecting server on
127.0.0.1 in ``http_server.py``.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import importlib.util
import os
import re
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

import fastidx
from fastidx import registry
from fastidx.datasets import SAMPLE_DIR
from http_server import (  # fixtures fetch_env, server: conftest.py
    MNIST_DIR,
    leftovers,
    sha256_file,
)

MNIST = registry.get("mnist")
REPO = Path(__file__).resolve().parents[1]
TRAIN_IMAGES = "/mnist/train-images-idx3-ubyte.gz"
COMMANDS = ("download", "info", "show", "cache", "bench", "demo")


def run(*args, env=None, cwd=None, timeout=60) -> subprocess.CompletedProcess:
    """``python -m fastidx *args`` with the test's environment."""
    return subprocess.run(
        [sys.executable, "-m", "fastidx", *map(str, args)],
        env=env or dict(os.environ), cwd=cwd, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, status: int, *words: str) -> str:
    """Exit ``status``, stderr ends with one ``fastidx: error:`` line naming ``words``, no traceback."""
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("fastidx: error:")]
    assert len(errors) == 1, result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == errors[0]
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


def read_png(path: Path) -> np.ndarray:
    """The pixels of an 8-bit grayscale PNG, every chunk's CRC checked, decoded by Pillow."""
    from PIL import Image

    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, kind
        chunks.append(kind)
        pos += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND"
    with Image.open(path) as image:
        assert image.mode == "L"
        return np.asarray(image)


def contains(picture: np.ndarray, image: np.ndarray, scale: int = 3) -> bool:
    """Whether ``image``, enlarged ``scale`` times, appears somewhere in ``picture``."""
    big = image.repeat(scale, 0).repeat(scale, 1)
    h, w = big.shape
    for r in range(picture.shape[0] - h + 1):
        hits = np.flatnonzero(np.all(np.lib.stride_tricks.sliding_window_view(picture[r], w) == big[0], axis=1))
        if any(np.array_equal(picture[r : r + h, c : c + w], big) for c in hits):
            return True
    return False


def write_dataset(directory: Path, name: str, train: int = 12, test: int = 5) -> Path:
    """A small dataset in ``directory`` with the official file names: random images, every class."""
    spec = registry.get(name)
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train), ("test", test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % spec.num_classes + spec.first_label).astype(np.uint8)
        fastidx.write_idx(directory / spec.files[f"{split}_images"].name, images)
        fastidx.write_idx(directory / spec.files[f"{split}_labels"].name, labels)
    return directory


@pytest.fixture
def mnist_server(fetch_env, server):
    """The shared MNIST files served at ``/mnist/`` (as a mirror expects them)."""
    if not (MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"shared MNIST data not found at {MNIST_DIR}")
    server.add_dir("/mnist", MNIST_DIR)
    return server


# --- help, version, usage errors ------------------------------------------------------------------


def test_version():
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"fastidx {fastidx.__version__}"


def test_help_lists_every_command_and_each_command_has_an_example():
    result = run("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout
    assert "fastidx demo" in result.stdout
    for command in (*COMMANDS, "cache list", "cache verify", "cache clear"):
        result = run(*command.split(), "--help")
        assert result.returncode == 0, result.stderr
        assert "example:" in result.stdout and f"fastidx {command}" in result.stdout.split("example:")[1]


def test_no_command_prints_help_and_fails():
    result = run()
    assert result.returncode == 2
    assert "usage: fastidx" in result.stderr and "demo" in result.stderr


@pytest.mark.parametrize(
    "args, words",
    [
        (["info", "mnits"], ["unknown dataset 'mnits'", "mnist, fashion_mnist, kmnist", "emnist_letters"]),
        (["download"], ["DATASET"]),
        (["show", "mnist"], ["--out"]),
        (["show", "mnist", "--out", "grid.jpg"], [".png"]),
        (["show", "mnist", "--out", "g.png", "--n", "0"], ["--n"]),
        (["show", "mnist", "--out", "g.png", "--n", "100000"], ["--n", "100,000", "at most 1,024"]),
        (["show", "mnist", "--out", "g.png", "--split", "validation"], ["--split"]),
        (["download", "mnist", "--mirror", "ftp://example.org/"], ["ftp://example.org/"]),
        (["cache", "prune", "--max-size", "12XB"], ["--max-size", "12XB", "500MB"]),
        (["cache", "shrink"], ["shrink"]),
        (["frobnicate"], ["frobnicate"]),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args, words):
    assert_one_line_error(run(*args), 2, *words)


def test_debug_shows_the_traceback(tmp_path):
    missing = tmp_path / "nowhere"
    assert_one_line_error(run("info", "mnist", "--path", missing), 1, str(missing))
    result = run("info", "mnist", "--path", missing, "--debug")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "DatasetNotFoundError" in result.stderr


def test_emnist_module_spelling_is_accepted():
    result = run("info", "emnist.letters")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("emnist_letters:")
    assert "1=a" in result.stdout and "26=z" in result.stdout and "gzip.zip" in result.stdout


# --- download -------------------------------------------------------------------------------------


def test_download_verifies_recompressed_files_by_their_content(mnist_server, fetch_env):
    result = run("download", "mnist", "--mirror", mnist_server.url, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "mnist: 4 files verified" in result.stdout
    directory = fetch_env / "mnist"
    for file in MNIST.files.values():
        cached = directory / file.name
        assert str(cached) in result.stdout
        # The shared files are re-gzipped copies: not the official bytes, but the official content.
        assert sha256_file(cached) != file.sha256
        assert hashlib.sha256(gzip.decompress(cached.read_bytes())).hexdigest() == file.content_sha256
    assert leftovers(directory) == []
    assert "\r" not in result.stderr  # --no-progress

    # Verified once: a second download asks the server nothing.
    requests = mnist_server.total_requests()
    again = run("download", "mnist", "--mirror", mnist_server.url)
    assert again.returncode == 0 and "4 files verified" in again.stdout
    assert mnist_server.total_requests() == requests

    info = run("info", "mnist")
    assert info.returncode == 0, info.stderr
    out = info.stdout
    for file in MNIST.files.values():
        assert file.sha256 in out and file.content_sha256 in out
        assert f"verified: {directory / file.name}" in out
    assert "x (60000, 28, 28) uint8  y (60000,) uint8" in out
    assert "x (10000, 28, 28) uint8  y (10000,) uint8" in out
    assert "0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in out
    assert f"{directory}: 11.4 MB in 4 files" in out  # the lock files beside them are not data
    assert "in 4 files" in run("cache", "list").stdout


def test_download_offline_names_what_is_missing(fetch_env):
    env = dict(os.environ, FASTIDX_OFFLINE="1")
    error = assert_one_line_error(run("download", "mnist", env=env), 1, "offline", "FASTIDX_OFFLINE=1")
    assert "train-images-idx3-ubyte.gz" in error
    assert not (fetch_env / "mnist").exists()


def test_download_failure_exits_1(fetch_env, server):
    # The server has no files, and every other mirror is behind a dead proxy.
    result = run("download", "kmnist", "--mirror", server.url, "--no-progress")
    assert_one_line_error(result, 1, "kmnist", "train-images-idx3-ubyte.gz")
    # One line in all: the mirrors tried and why they failed are in it, not in lines of their own.
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert server.url in result.stderr
    assert leftovers(fetch_env / "kmnist") == []


def test_unwritable_cache_directory(tmp_path, mnist_server):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run("download", "mnist", "--mirror", mnist_server.url, "--cache-dir", blocker / "cache")
    assert_one_line_error(result, 1, str(blocker / "cache"), "FASTIDX_HOME")


def _interruptible():
    # A child inherits an ignored SIGINT from a parent that runs in the background; the user's
    # terminal never does that to it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_during_a_download_exits_130_and_keeps_nothing_partial(mnist_server, fetch_env):
    mnist_server.fault(TRAIN_IMAGES, rate=1e6)  # about 10 s for the whole file
    child = subprocess.Popen(
        [sys.executable, "-m", "fastidx", "download", "mnist", "--mirror", mnist_server.url],
        env=dict(os.environ), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=_interruptible,
    )
    try:
        deadline = time.monotonic() + 30
        while mnist_server.get(TRAIN_IMAGES).bytes_sent < 300_000:
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the download did not start"
            time.sleep(0.02)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=15)
    finally:
        child.kill()
    assert child.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("fastidx: interrupted")
    assert "nothing partial was kept" in err
    directory = fetch_env / "mnist"
    assert leftovers(directory) == []
    assert not (directory / "train-images-idx3-ubyte.gz").exists()

    # The next run fetches the file again, whole, and verifies it.
    mnist_server.faults.clear()
    before = mnist_server.get(TRAIN_IMAGES).requests
    result = run("download", "mnist", "--mirror", mnist_server.url, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "4 files verified" in result.stdout
    assert mnist_server.get(TRAIN_IMAGES).requests == before + 1
    assert sha256_file(directory / "train-images-idx3-ubyte.gz") == sha256_file(MNIST_DIR / "train-images-idx3-ubyte.gz")


# --- info -----------------------------------------------------------------------------------------


def test_info_without_a_download():
    result = run("info", "fashion_mnist")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    spec = registry.get("fashion_mnist")
    for file in spec.files.values():
        assert file.name in out and file.sha256 in out
    assert out.count("not downloaded") >= 4
    assert "9=Ankle boot" in out and "0=T-shirt/top" in out
    assert "x (60000, 28, 28) uint8  y (60000,) uint8  (official; not downloaded)" in out


def test_info_on_a_directory_reads_the_headers():
    result = run("info", "mnist", "--path", SAMPLE_DIR)
    assert result.returncode == 0, result.stderr
    assert "x (1000, 28, 28) uint8  y (1000,) uint8" in result.stdout
    assert "x (200, 28, 28) uint8  y (200,) uint8" in result.stdout
    assert "not checked against the official hashes" in result.stdout


def test_info_on_a_directory_checks_each_file_completely(tmp_path):
    directory = write_dataset(tmp_path / "mnist", "mnist", train=300)
    result = run("info", "mnist", "--path", directory)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("found, complete") == 4

    images = directory / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:-2000])  # truncated: its header is still intact
    result = run("info", "mnist", "--path", directory)
    assert_one_line_error(result, 1, str(images))
    assert result.stdout.count("found, complete") == 3 and f"DAMAGED: {images}" in result.stdout


def test_info_kmnist_names_classes_in_hiragana_and_romaji():
    result = run("info", "kmnist")
    assert result.returncode == 0, result.stderr
    assert "0=お (o)" in result.stdout and "9=を (wo)" in result.stdout


# --- show -----------------------------------------------------------------------------------------


def test_show_falls_back_to_the_embedded_sample_for_mnist(tmp_path):
    out = tmp_path / "digits.png"
    result = run("show", "mnist", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "sample" in result.stderr and "fastidx download mnist" in result.stderr
    assert f"wrote {out}" in result.stdout
    picture = read_png(out)
    # 64 images, 3x: 8 columns and 8 rows of 84-pixel images with their labels, under a title.
    assert 8 * 84 < picture.shape[1] < 8 * 84 * 1.5 and 8 * 84 < picture.shape[0] < 8 * 84 * 1.8
    (x, y), _ = fastidx.datasets.mnist.load_data(path=SAMPLE_DIR, cache=False)
    assert contains(picture[:200, :200], x[0])  # the first image, top left
    assert contains(picture[-200:, -200:], x[63])  # the last, bottom right
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_show_random_test_images(tmp_path):
    out = tmp_path / "test.png"
    result = run("show", "mnist", "--path", SAMPLE_DIR, "--split", "test", "--n", "10", "--seed", "3", "--out", out)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # an explicit --path: nothing to explain
    picture = read_png(out)
    assert 4 * 84 < picture.shape[1] < 5 * 84  # ceil(sqrt(10)) columns
    _, (x, _) = fastidx.datasets.mnist.load_data(path=SAMPLE_DIR, cache=False)
    chosen = np.sort(np.random.default_rng(3).choice(len(x), size=10, replace=False))
    assert contains(picture, x[chosen[0]]) and contains(picture, x[chosen[-1]])


@pytest.mark.parametrize("name", ["fashion_mnist", "kmnist", "emnist_letters"])
def test_show_labels_other_datasets(tmp_path, name):
    directory = write_dataset(tmp_path / name, name)
    out = tmp_path / f"{name}.png"
    result = run("show", name, "--path", directory, "--out", out)
    assert result.returncode == 0, result.stderr
    picture = read_png(out)
    assert picture.shape[1] >= 4 * 84  # 12 images: 4 columns
    x, _ = fastidx.datasets.get(name).load("train", path=directory, cache=False)
    assert contains(picture, x[0]) and contains(picture, x[11])  # EMNIST upright, as loaded


def test_show_a_dataset_that_is_not_downloaded(tmp_path):
    result = run("show", "fashion_mnist", "--out", tmp_path / "f.png")
    assert_one_line_error(result, 1, "fashion_mnist is not downloaded", "fastidx download fashion_mnist")
    assert not (tmp_path / "f.png").exists()


def test_show_into_a_missing_directory(tmp_path):
    out = tmp_path / "no" / "such" / "dir.png"
    assert_one_line_error(run("show", "mnist", "--out", out), 1, f"cannot write {out}")


def test_show_a_bad_file(tmp_path):
    directory = write_dataset(tmp_path / "bad", "mnist")
    images = directory / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:-100])  # truncated
    result = run("show", "mnist", "--path", directory, "--out", tmp_path / "x.png")
    assert_one_line_error(result, 1, str(images))


# --- demo -----------------------------------------------------------------------------------------


def test_demo_offline_on_the_embedded_sample(tmp_path, fetch_env):
    env = dict(os.environ, FASTIDX_OFFLINE="1")
    result = run("demo", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "the MNIST sample shipped inside fastidx" in out and "offline mode is on (FASTIDX_OFFLINE=1)" in out
    assert "x_train  (1000, 28, 28)   uint8" in out and "y_test   (200,)           uint8" in out
    assert "(1000, 28, 28, 1) float32 in [0.0, 1.0]" in out
    assert "NumPy+gzip" in out and out.count("identical arrays") == 2
    # A few milliseconds a load: no verdict either way, and it says why.
    assert "faster" not in out and "slower" not in out
    assert "too small to time meaningfully" in out
    png = tmp_path / "fastidx-demo.png"
    assert out.rstrip().splitlines()[-2].endswith(str(png))
    (x, _), _ = fastidx.datasets.mnist.load_data(path=SAMPLE_DIR, cache=False)
    assert contains(read_png(png), x[0])
    assert not (fetch_env / "mnist").exists()


def test_demo_falls_back_quickly_when_the_network_is_down(tmp_path):
    # No offline flag: the official mirror is behind a dead proxy, so the probe fails at once.
    result = run("demo", "--out", tmp_path / "d.png")
    assert result.returncode == 0, result.stderr
    assert "could not download MNIST" in result.stdout
    assert (tmp_path / "d.png").is_file()


def test_demo_downloads_mnist_from_a_mirror_then_uses_the_cache(mnist_server, fetch_env, tmp_path):
    env = dict(os.environ, FASTIDX_MIRROR=mnist_server.url)
    result = run("demo", "--out", tmp_path / "d.png", env=env)
    assert result.returncode == 0, result.stderr
    assert "MNIST is not downloaded; downloading it (11.6 MB)" in result.stderr
    assert f"data: MNIST from {fetch_env / 'mnist'}" in result.stdout
    assert "x_train  (60000, 28, 28)  uint8" in result.stdout
    assert result.stdout.count("identical arrays") == 2
    assert "mmap=True" in result.stdout

    # The demo's loads went through the decoded-array cache; clearing it keeps the downloads.
    listing = run("cache", "list").stdout
    assert "decoded arrays in" in listing and "downloaded files in" in listing
    assert "60000x28x28 uint8" in listing
    assert "nothing to delete" in run("cache", "clear", "kmnist", "--yes").stdout
    cleared = run("cache", "clear", "mnist", "--yes")
    assert cleared.returncode == 0, cleared.stderr
    assert "kept the downloaded files" in cleared.stdout
    assert not list((fetch_env / "decoded").glob("*.fidx"))
    assert (fetch_env / "mnist" / "train-images-idx3-ubyte.gz").is_file()


# --- bench ----------------------------------------------------------------------------------------


def test_bench_outside_a_source_checkout_says_what_to_run(fetch_env, tmp_path):
    # An installed fastidx has no bench/: the built-in timing, and the exact command for the rest.
    result = run("bench", "--quick", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "built-in timing" in result.stdout
    assert 'pip install -e ".[bench]" && python bench/compare.py --quick' in result.stdout
    assert "identical arrays" in result.stdout
    usage = run("bench", "--", "--smoke", cwd=tmp_path)
    assert_one_line_error(usage, 2, "--smoke", "bench/compare.py", "source checkout")


def test_bench_builtin_timing(fetch_env):
    result = run("bench", "--quick", "--fastidx-only")
    assert result.returncode == 0, result.stderr
    assert "built-in timing" in result.stdout
    assert "the MNIST sample shipped inside fastidx" in result.stdout
    assert "NumPy+gzip" in result.stdout and result.stdout.count("identical arrays") == 2


# --- cache ----------------------------------------------------------------------------------------


def test_cache_list_verify_clear(tmp_path, fetch_env):
    assert run("cache", "list").stdout.startswith("nothing cached in")
    assert run("cache", "verify").returncode == 0

    # A cached load: show reads the sample's train split through the decoded-array cache.
    assert run("show", "mnist", "--out", tmp_path / "a.png").returncode == 0
    listing = run("cache", "list")
    assert listing.returncode == 0, listing.stderr
    assert "mnist: " in listing.stdout and "2 entries" in listing.stdout
    assert "train-images-idx3-ubyte.gz" in listing.stdout and "1000x28x28 uint8" in listing.stdout
    verified = run("cache", "verify")
    assert verified.returncode == 0 and "all 2 cache entries are intact" in verified.stdout

    entries = sorted((fetch_env / "decoded").glob("*.fidx"), key=lambda p: p.stat().st_size)
    assert len(entries) == 2
    damaged = entries[-1]  # the images
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0x40
    damaged.write_bytes(bytes(data))
    result = run("cache", "verify")
    assert_one_line_error(result, 1, f"damaged cache entry {damaged}")
    assert "1 of 2 cache entries are damaged" in result.stdout
    assert run("cache", "verify", "fashion_mnist").returncode == 0  # not that dataset's

    # Without --yes and without a terminal to ask on: refuse, delete nothing.
    refused = run("cache", "clear")
    assert_one_line_error(refused, 1, "--yes", "not a terminal", "delete 2 cache entries")
    assert damaged.exists()

    cleared = run("cache", "clear", "--yes")
    assert cleared.returncode == 0, cleared.stderr
    assert "deleted 2 cache entries" in cleared.stdout  # what it asked about, not the index and locks
    assert not list((fetch_env / "decoded").glob("*.fidx"))
    assert run("cache", "list").stdout.startswith("nothing cached in")


def test_cache_list_tells_conversions_of_one_file_apart(fetch_env):
    for options in ({"normalize": True}, {"mean": 0.1307, "std": 0.3081}):
        fastidx.datasets.mnist.load("test", path=SAMPLE_DIR, mmap=True, cache_dir=fetch_env, **options)
    listing = run("cache", "list")
    assert listing.returncode == 0, listing.stderr
    rows = [line.split(None, 2)[2] for line in listing.stdout.splitlines()
            if "t10k-images" in line and "(raw," in line]
    assert len(rows) == 2 and rows[0] != rows[1], listing.stdout


def test_bench_runs_the_comparison_without_optional_packages(fetch_env):
    # bench/compare.py needs nothing beyond fastidx's own dependencies: without TensorFlow it runs
    # and says which rows that skips, and what installs it.
    result = run("bench", "--", "--smoke", "--no-scaling", "--tools", "fastidx,numpy+gzip", timeout=300,
                 cwd=REPO)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert "compare.py" in result.stdout and "| case |" in result.stdout
    assert "built-in timing" not in result.stdout
    if importlib.util.find_spec("tensorflow") is None:
        assert 'pip install -e ".[bench]"' in result.stderr
        extra = importlib.metadata.requires("fastidx")
        assert any(r.startswith("tensorflow") and 'extra == "bench"' in r for r in extra)


@pytest.fixture
def without_pillow(tmp_path):
    """An environment in which ``import PIL`` fails, as where Pillow is not installed."""
    shim = tmp_path / "no-pillow" / "PIL"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text('raise ImportError("No module named \'PIL\'")\n')
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(shim.parent), os.environ.get("PYTHONPATH", "")]))


def test_pictures_without_pillow(tmp_path, fetch_env, without_pillow):
    result = run("show", "mnist", "--out", tmp_path / "g.png", env=without_pillow)
    assert_one_line_error(result, 1, "Pillow", 'pip install "fastidx[image]"')
    assert not (tmp_path / "g.png").exists()
    # The demo's main job does not need a picture: it says why there is none.
    demo = run("demo", "--offline", "--out", tmp_path / "d.png", env=without_pillow, cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    assert "no picture: pictures are drawn with Pillow" in demo.stdout
    assert not (tmp_path / "d.png").exists()


def test_the_command_line_uses_the_public_api_only():
    import fastidx.cli

    sources = {p.name: p.read_text() for p in Path(fastidx.cli.__file__).parent.glob("*.py")}
    assert len(sources) > 5  # a module per command
    for name, text in sources.items():
        for private in (r"\b_fetch\b", r"\b_cache\b", r"\._dataset\b", r"parents\[", r"\b_png\b"):
            assert not re.search(private, text), f"cli/{name} uses {private}"
        assert len(text.splitlines()) < 300, name


def test_a_verdict_needs_the_fastest_runs_and_the_medians_to_agree():
    from fastidx.cli.timing import Row

    # The fastest runs say 2x faster, the medians say slower: noise, no verdict.
    assert Row("x", [1.0, 1.0, 5.0, 5.0, 5.0], [2.0] * 5).verdict() == "no clear difference"
    # One disturbed run does not hide a real difference, either way.
    assert Row("x", [1.0, 1.1, 1.2, 1.0, 9.0], [2.0, 2.1, 2.2, 2.0, 2.5]).verdict() == " 2.0x faster"
    assert Row("x", [2.0, 2.0, 2.1, 2.0, 2.2], [1.0, 1.05, 9.0, 1.0, 1.0]).verdict() == " 2.0x slower"
    # Within 10%: no verdict.
    assert Row("x", [1.0, 1.05, 1.02, 1.0, 1.0], [1.05, 1.0, 1.03, 1.08, 1.0]).verdict() == "no clear difference"


def test_cache_prune_to_a_size(fetch_env):
    for options in ({"normalize": True}, {}):
        fastidx.datasets.mnist.load_data(path=SAMPLE_DIR, mmap=True, cache_dir=fetch_env, **options)
    before = fastidx.cache.list_entries(cache_dir=fetch_env)
    assert sum(e.size_on_disk for e in before) > 4_000_000
    result = run("cache", "prune", "--max-size", "1MB")
    assert result.returncode == 0, result.stderr
    after = fastidx.cache.list_entries(cache_dir=fetch_env)
    removed = {e.path for e in before} - {e.path for e in after}
    assert f"pruned {len(removed)} cache entries" in result.stdout
    assert sum(e.size_on_disk for e in after) <= 1_000_000
    # Uncompressed files go first: every compressed entry is still there.
    assert {e.path for e in before if e.kind == "frames"} <= {e.path for e in after}
    assert all("removed" in line for line in result.stdout.splitlines()[:len(removed)])
    assert "pruned 0 cache entries" in run("cache", "prune", "--max-size", "1MB").stdout


def test_held_library_messages_get_one_prefix():
    import logging

    from fastidx.cli._common import _Held

    held = _Held()
    for message in ("fastidx: a mirror is slow", "a cache entry was rebuilt"):
        held.emit(logging.LogRecord("fastidx._fetch", logging.WARNING, __file__, 1, message, None, None))
    assert held.lines == ["fastidx: a mirror is slow", "fastidx: a cache entry was rebuilt"]

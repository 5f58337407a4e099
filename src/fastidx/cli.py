"""The ``fastidx`` command line (also ``python -m fastidx``).

::

    fastidx demo                                 # first run: MNIST (or the embedded sample), offline
    fastidx download mnist fashion_mnist         # fetch and verify into the cache
    fastidx info kmnist                          # files, hashes, cache state, shapes, class names
    fastidx show fashion_mnist --out grid.png    # a labelled grid of sample images
    fastidx cache list | verify | clear          # what the cache holds
    fastidx bench --quick                        # timings against plain NumPy (and tf.keras)

Each command is a thin layer over the library: downloads are :func:`fastidx._fetch.fetch`, the
cache is :mod:`fastidx.cache`, loading is :mod:`fastidx.datasets`, pictures are :mod:`fastidx._png`.
Errors a user can fix are one line on stderr, ``fastidx: error: ...``, exit status 2 for usage and
1 otherwise (``--debug`` adds the traceback); Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
import textwrap
import time
import traceback
import urllib.parse
import warnings
from dataclasses import dataclass
from pathlib import Path

from . import __version__, registry
from ._errors import CacheDirError, DatasetNotFoundError, DownloadError, FastIDXError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: ``bench/compare.py`` runs on NumPy alone; with TensorFlow (the ``[bench]`` extra installs it as
#: ``tensorflow-cpu``) it also times tf.keras's own loaders.
BENCH_OPTIONAL = "tensorflow"
#: How long the demo waits to learn whether the network is there before using the sample.
PROBE_TIMEOUT = 3.0
#: The most images ``show`` draws in one picture: 32 x 32 MNIST digits, a 3,072-pixel-wide PNG.
MAX_SHOW = 1024


class CLIError(Exception):
    """A problem the user can fix: printed as one line, exit status ``status``."""

    def __init__(self, message: str, status: int = EXIT_FAILURE):
        super().__init__(message)
        self.status = status


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what the user should know about the state it left."""


# --- the parser -----------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        self.exit(EXIT_USAGE, f"fastidx: error: {message} (see '{self.prog} --help')\n")


def _dataset_arg(text: str) -> str:
    """A registry name; ``emnist.letters`` (the module spelling) is accepted too."""
    try:
        return registry.get(text.replace(".", "_")).name
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _mirror_arg(text: str) -> str:
    if urllib.parse.urlsplit(text).scheme.lower() in {"http", "https", "file"}:
        return text
    if os.path.isdir(text):  # a local mirror directory: what the user meant is its file:// URL
        return Path(text).resolve().as_uri()
    raise argparse.ArgumentTypeError(f"mirror {text!r} is not an http://, https:// or file:// URL, nor a directory")


def _count_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _show_count_arg(text: str) -> int:
    value = _count_arg(text)
    if value > MAX_SHOW:
        raise argparse.ArgumentTypeError(
            f"{value:,} images are too many for one picture: at most {MAX_SHOW:,} (pick a random "
            f"sample with --seed, or write several pictures)")
    return value


def _png_arg(text: str) -> Path:
    if not text.lower().endswith(".png"):
        raise argparse.ArgumentTypeError(f"the picture is written as PNG: give a file name ending in .png, not {text!r}")
    return Path(text)


def build_parser() -> argparse.ArgumentParser:
    known = ", ".join(registry.DATASETS)
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand's default must not overwrite `fastidx --debug <command>`.
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks and debug logging")
    cache_dir = argparse.ArgumentParser(add_help=False)
    cache_dir.add_argument("--cache-dir", metavar="DIR",
                           help="the cache directory (default: $FASTIDX_HOME, else the user cache directory)")

    parser = _Parser(
        prog="fastidx",
        description="Fast, safe loading of IDX datasets (MNIST, Fashion-MNIST, KMNIST, EMNIST).",
        epilog=textwrap.dedent(f"""\
            first run:
              fastidx demo                  loads MNIST (or the sample shipped inside fastidx)

            datasets: {known}
            environment: FASTIDX_HOME (cache directory), FASTIDX_MIRROR (base URLs tried first),
                         FASTIDX_OFFLINE=1 (never use the network)
            'fastidx COMMAND --help' shows each command's options and an example."""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name, run, help, example, parents=()):
        sub = commands.add_parser(
            name, help=help, description=help[0].upper() + help[1:] + ".",
            epilog="example:\n  " + "\n  ".join(example.splitlines()),
            formatter_class=argparse.RawDescriptionHelpFormatter, parents=[common, *parents],
        )
        sub.set_defaults(run=run)
        return sub

    p = command("download", cmd_download, "fetch datasets into the cache and verify them",
                "fastidx download mnist fashion_mnist\n"
                "fastidx download mnist --mirror http://mirror.example/datasets   "
                "# files at <URL>/mnist/<file>", [cache_dir])
    p.add_argument("datasets", nargs="+", type=_dataset_arg, metavar="DATASET", help=f"one of: {known}")
    p.add_argument("--mirror", action="append", type=_mirror_arg, metavar="URL",
                   help="a base URL (or directory) tried before $FASTIDX_MIRROR and the official "
                        "mirrors; repeatable")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown on a terminal)")

    p = command("info", cmd_info, "describe a dataset: files, hashes, cache state, shapes, class names",
                "fastidx info fashion_mnist\nfastidx info mnist --path ~/data/mnist", [cache_dir])
    p.add_argument("dataset", type=_dataset_arg, metavar="DATASET", help=f"one of: {known}")
    p.add_argument("--path", metavar="DIR", help="describe the files in DIR (or a Keras .npz) instead of the cache")

    p = command("show", cmd_show, "write a grid of sample images with their class names as PNG",
                "fastidx show mnist --out digits.png\n"
                "fastidx show fashion_mnist --split test --n 25 --seed 1 --out fashion.png", [cache_dir])
    p.add_argument("dataset", type=_dataset_arg, metavar="DATASET", help=f"one of: {known}")
    p.add_argument("--out", required=True, type=_png_arg, metavar="FILE.png", help="where to write the picture")
    p.add_argument("--path", metavar="DIR",
                   help="read the files from DIR (or a Keras .npz); default: the cache, and for mnist "
                        "the sample shipped inside fastidx when MNIST is not downloaded")
    p.add_argument("--split", choices=("train", "test"), default="train", help="default: train")
    p.add_argument("--n", type=_show_count_arg, default=64, metavar="N",
                   help=f"number of images, at most {MAX_SHOW:,} (default: 64)")
    p.add_argument("--seed", type=int, metavar="SEED",
                   help="show a random sample drawn with this seed (default: the first N images)")
    p.add_argument("--download", action="store_true", help="download the dataset if it is not cached")

    p = command("cache", None, "list, verify or clear what the cache holds",
                "fastidx cache list\nfastidx cache verify\nfastidx cache clear fashion_mnist --yes")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=_Parser)
    for name, run, help, example in (
        ("list", cmd_cache_list, "list the decoded arrays and downloaded files in the cache, with their sizes",
         "fastidx cache list"),
        ("verify", cmd_cache_verify, "check every entry of the decoded-array cache completely; exit status 1 "
         "if one is damaged (downloaded files are checked against their official hashes whenever they are used)",
         "fastidx cache verify"),
        ("clear", cmd_cache_clear, "delete the decoded arrays (all, or one dataset's); downloaded files are kept",
         "fastidx cache clear kmnist --yes"),
    ):
        a = actions.add_parser(
            name, help=help, description=help[0].upper() + help[1:] + ".", epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter, parents=[common, cache_dir],
        )
        a.set_defaults(run=run)
        a.add_argument("dataset", nargs="?", type=_dataset_arg, metavar="DATASET",
                       help="only this dataset (default: everything)")
        if name == "clear":
            a.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")

    p = command("bench", cmd_bench, "time fastidx against plain NumPy + gzip (and tf.keras, with the [bench] extras)",
                "fastidx bench --quick", [cache_dir])
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    p.add_argument("--fastidx-only", action="store_true",
                   help="the built-in timing only, even when bench/compare.py is there")
    p.add_argument("compare_args", nargs=argparse.REMAINDER, metavar="-- ARGS",
                   help="after '--': options for bench/compare.py (see 'python bench/compare.py --help')")

    p = command("demo", cmd_demo, "load MNIST, compare load times with plain NumPy + gzip, write a sample grid",
                "fastidx demo\nFASTIDX_OFFLINE=1 fastidx demo --out /tmp/digits.png", [cache_dir])
    p.add_argument("--out", type=_png_arg, default=Path("fastidx-demo.png"), metavar="FILE.png",
                   help="where to write the grid (default: ./fastidx-demo.png)")
    p.add_argument("--offline", action="store_true",
                   help="never use the network (like FASTIDX_OFFLINE=1): the cache, else the sample")
    return parser


# --- entry point ----------------------------------------------------------------------------------


def main(argv=None) -> int:
    """Run the ``fastidx`` command with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    debug = getattr(args, "debug", False)
    held = _configure_output(debug)
    try:
        status = args.run(args) or EXIT_OK
        if held is not None:
            held.flush_to(sys.stderr)
        return status
    except KeyboardInterrupt as exc:
        if debug:
            traceback.print_exc()
        detail = f"; {exc}" if isinstance(exc, Interrupted) and str(exc) else ""
        print(f"fastidx: interrupted{detail}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `fastidx info mnist | head`: the reader left; say nothing more, not even at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    except (CLIError, FastIDXError, OSError, ValueError) as exc:
        if debug:
            traceback.print_exc()
        _error(_describe(exc))
        return getattr(exc, "status", EXIT_FAILURE)
    except Exception as exc:  # a bug: say so in one line, keep the traceback for --debug
        if debug:
            raise
        _error(f"internal error ({type(exc).__name__}: {exc}); run again with --debug for the traceback "
               f"and please report it")
        return EXIT_FAILURE


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (CLIError, FastIDXError)) or not isinstance(exc, OSError) or not exc.strerror:
        return str(exc)
    return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror


def _error(message: str) -> None:
    print(f"fastidx: error: {message}", file=sys.stderr, flush=True)


def _note(message: str) -> None:
    print(f"fastidx: {message}", file=sys.stderr, flush=True)


class _Held(logging.Handler):
    """Library warnings and log records, held until the command ends.

    A command that succeeds prints them afterwards as ``fastidx: ...`` lines; one that fails says
    everything in its one error line (a failed download names every mirror it tried and why), so
    they are dropped. ``--debug`` prints every record as it comes instead.
    """

    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"fastidx: {record.getMessage()}")

    def warn(self, message, category, filename, lineno, file=None, line=None) -> None:
        self.lines.append(f"fastidx: warning: {message}")

    def flush_to(self, stream) -> None:
        for line in dict.fromkeys(self.lines):  # once each: a warning repeated per file is one line
            print(line, file=stream)
        stream.flush()
        self.lines.clear()


def _configure_output(debug: bool) -> _Held | None:
    """Where library log records and warnings go: held (see :class:`_Held`), or live with --debug."""
    logger = logging.getLogger("fastidx")
    logger.propagate = False
    if debug:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        return None
    global _held
    _held = _Held()
    logger.addHandler(_held)
    logger.setLevel(logging.WARNING)
    warnings.showwarning = _held.warn
    return _held


_held: _Held | None = None


def _flush_notes() -> None:
    """Print the library's held records now (after a step that succeeded)."""
    if _held is not None:
        _held.flush_to(sys.stderr)


def _drop_notes() -> None:
    """Forget the held records of a step whose failure is reported in one line that says it all."""
    if _held is not None:
        _held.lines.clear()


# --- download -------------------------------------------------------------------------------------


def cmd_download(args) -> int:
    from . import _fetch

    progress = False if args.no_progress else None
    failed = 0
    for name in dict.fromkeys(args.datasets):
        try:
            files = _fetch.fetch(name, cache_dir=args.cache_dir, mirrors=args.mirror, progress=progress)
        except KeyboardInterrupt:
            raise Interrupted(
                f"{name} was not downloaded completely and nothing partial was kept; run the same command "
                f"again to download it"
            ) from None
        except CacheDirError:
            raise  # the same for every dataset: say it once
        except (DownloadError, DatasetNotFoundError) as exc:  # ChecksumError is a DownloadError
            _drop_notes()
            message = str(exc)
            _error(message if message.startswith(name) else f"{name}: {message}")
            failed += 1
            continue
        _flush_notes()
        total = sum(path.stat().st_size for path in files.values())
        print(f"{name}: {len(files)} file{'s' if len(files) > 1 else ''} verified ({_size(total)})")
        for path in files.values():
            print(f"  {path}")
    return EXIT_FAILURE if failed else EXIT_OK


# --- info -----------------------------------------------------------------------------------------


def cmd_info(args) -> int:
    from . import _fetch
    from ._idx import read_header
    from ._paths import cache_root

    spec = registry.get(args.dataset)
    root = cache_root(args.cache_dir)
    if args.path is not None:
        from .datasets import Dataset

        local = Dataset(spec.name).files(args.path)
        where = f"{args.path} (files found there are not checked against the official hashes)"
    else:
        try:
            local = _fetch.fetch(spec.name, cache_dir=args.cache_dir, offline=True, progress=False)
        except DatasetNotFoundError:
            # fetch() just verified every file that is there and deleted any that failed, so what
            # is still in the cache is verified; the rest is missing.
            directory = root / spec.dir_name
            local = {role: directory / file.name for role, file in spec.files.items()
                     if (directory / file.name).is_file()}
        where = f"{root}"

    damaged: list[str] = []
    lines = [f"{spec.name}: {sum(spec.splits.values()):,} images of {_shape(spec.image_shape)}, "
             f"{spec.num_classes} classes" + (" (stored transposed; loaded upright)" if spec.transposed else "")]
    lines.append("classes   " + _wrap(_class_list(spec), 10))
    lines.append("splits    " + "  ".join(f"{split} {n:,}" for split, n in spec.splits.items()) + " (official)")
    for split in ("train", "test"):
        lines.append(f"  {split:<6}  " + _split_shapes(spec, split, local, read_header))
    lines.append(f"files     from {where}")
    if "npz" in local:
        lines.append(f"  Keras's {local['npz'].name}: verified, {local['npz']}")
    for role, file in spec.files.items():
        size = f"{file.size:,} bytes" if file.size is not None else "size not published"
        lines.append(f"  {role:<13} {file.name}  ({size})")
        if file.sha256:
            lines.append(f"      sha256          {file.sha256}")
        if file.content_sha256:
            lines.append(f"      decoded sha256  {file.content_sha256}")
        if not file.sha256 and not file.content_sha256 and spec.archive is not None:
            lines.append(f"      extracted from {spec.archive.name}, which is verified")
        path = local.get(role)
        if path is None:
            state = "not downloaded"
        elif args.path is None:
            state = "verified"
        else:
            problem = _check_idx(path)
            state = "found, complete (header, length and CRC checked)" if problem is None else "DAMAGED"
            if problem is not None:
                damaged.append(problem)
        lines.append(f"      {state}" + (f": {path}" if path is not None else ""))
    if spec.archive is not None:
        archive = spec.archive
        lines.append(f"  archive       {archive.name}  ({archive.size:,} bytes, all six EMNIST splits)")
        lines.append(f"      sha256          {archive.sha256}")
        zip_path = root / spec.dir_name / archive.name
        lines.append(f"      {'cached: ' + str(zip_path) if zip_path.is_file() else 'not downloaded'}")
    lines.append("cache     " + _cache_usage(root, spec, args.cache_dir))
    print("\n".join(lines), flush=True)
    if damaged:
        raise CLIError("; ".join(damaged))
    return EXIT_OK


def _check_idx(path: Path) -> str | None:
    """None if ``path`` is a complete IDX file (gzip CRC and length included), else what is wrong.

    Decoded in pieces and dropped, so memory stays small whatever the file's size.
    """
    from ._errors import IDXError
    from ._idx import IDXReader

    try:
        with IDXReader(path) as reader:
            reader.skip_rows(reader.rows)
            reader.finish()
    except IDXError as exc:
        return str(exc)
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    return None


def _shape(shape) -> str:
    return "x".join(str(d) for d in shape)


def _class_list(spec: registry.DatasetSpec) -> list[str]:
    from ._png import label_text

    names = []
    for i, name in enumerate(spec.class_names[spec.first_label:], start=spec.first_label):
        if name == str(i):  # digits: the label is the name
            names.append(name)
        else:
            readable = label_text(name, i)
            names.append(f"{i}={name}" + (f" ({readable})" if readable != name and not readable.isdigit() else ""))
    return names


def _wrap(items: list[str], indent: int, width: int = 100) -> str:
    """``items`` joined by commas, lines broken between items only."""
    lines, line = [], ""
    for item in items:
        piece = f"{item}, " if item is not items[-1] else item
        if line and indent + len(line) + len(piece.rstrip()) > width:
            lines.append(line.rstrip())
            line = ""
        line += piece
    lines.append(line)
    return ("\n" + " " * indent).join(lines)


def _split_shapes(spec, split: str, local: dict, read_header) -> str:
    """Shapes and dtypes from the local files' headers, else the official ones."""
    images, labels = f"{split}_images", f"{split}_labels"
    if "npz" in local:
        import numpy as np

        with np.load(local["npz"]) as npz:
            x, y = npz[f"x_{split}"], npz[f"y_{split}"]
            return f"x {x.shape} {x.dtype}  y {y.shape} {y.dtype}  ({local['npz'].name})"
    if images in local and labels in local:
        x, y = read_header(local[images]), read_header(local[labels])
        if spec.transposed and len(x.shape) == 3:
            x = x._replace(shape=(x.shape[0], x.shape[2], x.shape[1]))
        return f"x {x.shape} {x.dtype.name}  y {y.shape} {y.dtype.name}"
    n = spec.splits[split]
    return f"x {(n, *spec.image_shape)} uint8  y ({n},) uint8  (official; not downloaded)"


def _tree_size(directory: Path) -> tuple[int, int]:
    """(bytes, files) of the data under ``directory``: hidden files (locks, downloads in progress)
    are bookkeeping, not data, and are not counted."""
    total = count = 0
    for dirpath, _, filenames in os.walk(directory):
        for filename in filenames:
            if filename.startswith("."):
                continue
            try:
                total += os.lstat(os.path.join(dirpath, filename)).st_size
                count += 1
            except OSError:
                pass
    return total, count


def _cache_usage(root: Path, spec: registry.DatasetSpec, cache_dir) -> str:
    size, count = _tree_size(root / spec.dir_name)
    if count:
        text = f"{root / spec.dir_name}: {_size(size)} in {count} file{'s' if count != 1 else ''}"
        if spec.archive is not None:
            text += " (shared by all EMNIST splits)"
    else:
        text = f"nothing downloaded in {root / spec.dir_name}"
    entries = _cache_entries(cache_dir, spec.name)
    if entries:
        decoded = sum(e.size_on_disk for e in entries)
        text += f"; decoded arrays: {_size(decoded)} in {len(entries)} entr{'ies' if len(entries) != 1 else 'y'}"
    return text


# --- show -----------------------------------------------------------------------------------------


@dataclass
class Source:
    """Where a command reads a dataset from: ``path`` for ``load(..., path)``; None is the cache."""

    path: Path | None
    description: str
    sample: bool = False


def _cached(name: str, cache_dir) -> dict | None:
    """The dataset's verified local files, without using the network; None if they are not all there."""
    from . import _fetch

    try:
        return _fetch.fetch(name, cache_dir=cache_dir, offline=True, progress=False)
    except DatasetNotFoundError:
        return None


def _describe_files(files: dict) -> str:
    if "npz" in files:
        return f"Keras's {files['npz']}"
    return str(files["train_images"].parent)


def _sample_source(reason: str) -> Source:
    from .datasets import SAMPLE_DIR

    return Source(SAMPLE_DIR, f"the MNIST sample shipped inside fastidx ({SAMPLE_DIR}); {reason}", sample=True)


def cmd_show(args) -> int:
    import numpy as np

    from ._png import image_grid, label_text
    from .datasets import Dataset

    name = args.dataset
    if args.path is not None:
        source = Source(Path(args.path).expanduser(), str(args.path))
    else:
        files = _cached(name, args.cache_dir)
        if files is not None:
            source = Source(None, _describe_files(files))
        elif args.download:
            source = Source(None, "the cache (downloaded now)")
        elif name == "mnist":
            source = _sample_source("MNIST is not downloaded ('fastidx download mnist' gets it)")
            _note(f"showing {source.description}")
        else:
            raise CLIError(
                f"{name} is not downloaded: run 'fastidx download {name}' (or add --download), or pass "
                f"--path DIR with its files"
            )
    dataset = Dataset(name)
    try:
        x, y = dataset.load(args.split, source.path, cache_dir=args.cache_dir)
    except KeyboardInterrupt:
        raise Interrupted(f"{name} was not loaded; nothing partial was kept") from None
    n = min(args.n, len(x))
    if args.seed is None:
        chosen = np.arange(n)
    else:
        chosen = np.sort(np.random.default_rng(args.seed).choice(len(x), size=n, replace=False))
    names = dataset.class_names
    labels = [label_text(names[v] if v < len(names) else str(v), v) for v in y[chosen].tolist()]
    sample = " (sample)" if source.sample else ""
    title = f"{name} {args.split}{sample}: " + (f"first {n}" if args.seed is None else f"{n} random") + f" of {len(x)}"
    grid = image_grid(x[chosen], labels, title=title)
    _write_png(args.out, grid)
    print(f"wrote {args.out}: {n} {args.split} images of {name}{sample} with their class names "
          f"({grid.shape[1]}x{grid.shape[0]} pixels)")
    return EXIT_OK


def _write_png(path: Path, image) -> None:
    from ._png import write_png

    try:
        write_png(path, image)
    except OSError as exc:
        raise CLIError(f"cannot write {path}: {exc.strerror or exc}; choose another --out") from None


# --- cache ----------------------------------------------------------------------------------------
# The decoded-array cache is fastidx.cache's; downloaded files belong to the fetch layer, which
# verifies them whenever they are used. `cache list` shows both, so that the sizes add up.


def _cache_entries(cache_dir, dataset: str | None = None) -> list:
    from . import cache

    return [e for e in cache.list_entries(cache_dir=cache_dir) if dataset is None or e.dataset == dataset]


def _download_dirs(root: Path, dataset: str | None) -> list[tuple[str, Path, int, int]]:
    """(datasets, directory, bytes, files) of every non-empty download directory."""
    names: dict[str, list[str]] = {}
    for spec in registry.DATASETS.values():
        if dataset is None or spec.name == dataset:
            names.setdefault(spec.dir_name, []).append(spec.name)
    rows = []
    for dir_name, datasets in names.items():
        size, count = _tree_size(root / dir_name)
        if count:
            label = dir_name if len(datasets) > 1 and dataset is None else ", ".join(datasets)
            rows.append((label, root / dir_name, size, count))
    return rows


def cmd_cache_list(args) -> int:
    from ._cache import decoded_dir
    from ._paths import cache_root

    root = cache_root(args.cache_dir)
    entries = _cache_entries(args.cache_dir, args.dataset)
    downloads = _download_dirs(root, args.dataset)
    if not entries and not downloads:
        print(f"nothing cached in {root}" + (f" for {args.dataset}" if args.dataset else ""))
        return EXIT_OK
    if entries:
        print(f"decoded arrays in {decoded_dir(args.cache_dir)}:")
        by_dataset: dict[str, list] = {}
        for entry in entries:
            by_dataset.setdefault(entry.dataset or "(unknown)", []).append(entry)
        for name, group in by_dataset.items():
            print(f"  {name}: {_size(sum(e.size_on_disk for e in group))} in {len(group)} "
                  f"entr{'ies' if len(group) != 1 else 'y'}")
            for e in group:
                shape = "x".join(map(str, e.shape))
                print(f"    {_size(e.size_on_disk):>9}  {e.source_name:<32} {e.kind:<6} {e.variant:<7} "
                      f"{shape} {e.dtype}  {_conversion_text(e)}")
    if downloads:
        print(f"downloaded files in {root}:")
        for label, directory, size, count in downloads:
            print(f"  {label}: {_size(size)} in {count} file{'s' if count != 1 else ''}  ({directory})")
    total = sum(e.size_on_disk for e in entries) + sum(row[2] for row in downloads)
    print(f"total: {_size(total)}")
    return EXIT_OK


def _conversion_text(entry) -> str:
    """What distinguishes entries of one source: the values they hold (a raw file per conversion)."""
    if entry.kind == "frames" or entry.conversion in (None, "native"):
        return "values as stored"
    return f"converted values (conversion {entry.conversion})"


def cmd_cache_verify(args) -> int:
    from . import cache

    results = cache.verify(cache_dir=args.cache_dir)
    if args.dataset is not None:
        # An entry whose header is damaged cannot say whose it is: it is reported for every dataset.
        everything = cache.list_entries(cache_dir=args.cache_dir)
        mine = {e.path for e in everything if e.dataset == args.dataset}
        readable = {e.path for e in everything}
        results = [r for r in results if r.path in mine or (not r.ok and r.path not in readable)]
    broken = [r for r in results if not r.ok]
    for r in broken:
        _error(f"damaged cache entry {r.path}: {r.reason}")
    if broken:
        print(f"{len(broken)} of {len(results)} cache entries are damaged; a load rebuilds them from their "
              f"source, 'fastidx cache clear' deletes them")
        return EXIT_FAILURE
    print(f"all {len(results)} cache entries are intact" if results else "the cache has no entries to verify")
    return EXIT_OK


def cmd_cache_clear(args) -> int:
    from . import cache
    from ._cache import decoded_dir
    from ._paths import cache_root

    root = cache_root(args.cache_dir)
    directory = decoded_dir(args.cache_dir)
    entries = _cache_entries(args.cache_dir, args.dataset)
    count, size = len(entries), sum(e.size_on_disk for e in entries)
    what = f"decoded arrays{' of ' + args.dataset if args.dataset else ''}"
    if count == 0:
        print(f"nothing to delete: no {what} in {directory}")
    else:
        if not args.yes:
            _confirm(f"delete {_entries(count)} ({_size(size)} of {what}) in {directory}?")
        cleared = cache.clear(dataset=args.dataset, cache_dir=args.cache_dir)
        # Entries, as asked about: the source index and lock files that go with them are not data.
        left = len(_cache_entries(args.cache_dir, args.dataset))
        print(f"deleted {_entries(max(count - left, 0))} ({_size(cleared.bytes)}) of {what} from {directory}"
              + (f"; {_entries(left)} written meanwhile by another process were kept" if left else ""))
    downloads = _download_dirs(root, args.dataset)
    if downloads:
        kept = sum(row[2] for row in downloads)
        places = ", ".join(str(row[1]) for row in downloads)
        print(f"kept the downloaded files ({_size(kept)} in {places}); delete them by hand if you want the "
              f"space back (they will be downloaded again when needed)")
    return EXIT_OK


def _entries(n: int) -> str:
    return f"{n} cache entr{'ies' if n != 1 else 'y'}"


def _confirm(question: str) -> None:
    """Ask on the terminal; without one, refuse instead of waiting for input that never comes."""
    if sys.stdin is None or not sys.stdin.isatty():
        raise CLIError(f"{question[:-1]}: refusing without confirmation (stdin is not a terminal); add --yes")
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        answer = ""
    if answer.strip().lower() not in {"y", "yes"}:
        raise CLIError("nothing was deleted")


# --- timings (demo and bench) ---------------------------------------------------------------------


def _interleaved(first, second, repeat: int):
    """Times in seconds of ``repeat`` calls of each, alternating which goes first; and the results."""
    times: tuple[list, list] = ([], [])
    results = [None, None]
    for r in range(repeat):
        for which in ((0, 1) if r % 2 == 0 else (1, 0)):
            function = (first, second)[which]
            if function is None:
                continue
            start = time.perf_counter()
            results[which] = function()
            times[which].append(time.perf_counter() - start)
    return times, results


def _numpy_gzip(files: dict, image_shape, normalize: bool = False):
    """What one writes without fastidx: gunzip each file, skip its header, reshape (and scale)."""
    import gzip

    import numpy as np

    if "npz" in files:
        with np.load(files["npz"]) as npz:
            arrays = [npz["x_train"], npz["y_train"], npz["x_test"], npz["y_test"]]
    else:
        arrays = []
        for role, header in (("train_images", 16), ("train_labels", 8), ("test_images", 16), ("test_labels", 8)):
            with gzip.open(files[role], "rb") as f:
                arrays.append(np.frombuffer(f.read(), np.uint8, offset=header))
        arrays[0] = arrays[0].reshape(-1, *image_shape)
        arrays[2] = arrays[2].reshape(-1, *image_shape)
    if normalize:
        arrays[0] = arrays[0].astype(np.float32) / np.float32(255)
        arrays[2] = arrays[2].astype(np.float32) / np.float32(255)
    return (arrays[0], arrays[1]), (arrays[2], arrays[3])


def _same(a, b) -> bool:
    import numpy as np

    return all(np.array_equal(p, q) for p, q in zip(_flat(a), _flat(b)))


def _flat(data):
    (x_train, y_train), (x_test, y_test) = data
    return x_train, y_train, x_test, y_test


@dataclass
class _Row:
    what: str
    ours: list  # seconds, one per run
    theirs: list | None = None  # NumPy + gzip's, when compared
    remark: str = ""

    def verdict(self) -> str:
        """"N.Nx faster" / "N.Nx slower" only when every run of one beat every run of the other:
        a gap inside the run-to-run spread is no result."""
        if not self.theirs:
            return ""
        if max(self.ours) < min(self.theirs):
            return f"{min(self.theirs) / min(self.ours):4.1f}x faster"
        if min(self.ours) > max(self.theirs):
            return f"{min(self.ours) / min(self.theirs):4.1f}x slower"
        return "no clear difference"


def _timings(dataset, source: Source, cache_dir, repeat: int) -> list[_Row]:
    """fastidx against plain NumPy + gzip, ``repeat`` interleaved runs each."""
    files = dataset.files(source.path, cache_dir=cache_dir)
    shape = dataset.spec.image_shape
    rows = []
    for what, options in (("uint8", {}), ("float32 in [0, 1] (normalize=True)", {"normalize": True})):
        (ours, theirs), (a, b) = _interleaved(
            lambda o=options: dataset.load_data(source.path, cache=False, cache_dir=cache_dir, **o),
            lambda o=options: _numpy_gzip(files, shape, **o), repeat)
        rows.append(_Row(what, ours, theirs, "identical arrays" if _same(a, b) else "ARRAYS DIFFER"))
    for what, options in (("uint8 from the decoded cache (cache=True)", {}),
                          ("uint8 memory-mapped from the cache (mmap=True)", {"mmap": True})):
        dataset.load_data(source.path, cache=True, cache_dir=cache_dir, **options)  # fills the cache
        (ours, _), _ = _interleaved(
            lambda o=options: dataset.load_data(source.path, cache=True, cache_dir=cache_dir, **o), None, repeat)
        rows.append(_Row(what, ours))
    return rows


def _print_timings(rows: list[_Row], repeat: int, sample: bool) -> None:
    """The fastest run of each; a verdict only where the runs support one, and none on the sample."""
    width = max(len(r.what) for r in rows)
    print(f"  {'load_data(), best of ' + str(repeat):<{width}}  {'fastidx':>9}  {'NumPy+gzip':>10}")
    for row in rows:
        theirs = f"{min(row.theirs) * 1e3:8.1f} ms" if row.theirs else f"{'':>11}"
        verdict = "" if sample or not row.theirs else f"  {row.verdict()}"
        remark = f"  {row.remark}" if row.remark else ""
        print(f"  {row.what:<{width}}  {min(row.ours) * 1e3:6.1f} ms  {theirs}{verdict}{remark}")
    if sample:
        print("  the 1,200-image sample is too small to time meaningfully (a few milliseconds a load, mostly "
              "fixed costs): no verdict; 'fastidx download mnist' then the same command again times MNIST")


def _local_mnist(cache_dir, offline_reason: str) -> Source:
    files = _cached("mnist", cache_dir)
    if files is not None:
        return Source(None, f"MNIST from {_describe_files(files)}")
    return _sample_source(offline_reason)


# --- bench ----------------------------------------------------------------------------------------


def _compare_script() -> Path | None:
    """``bench/compare.py`` of the source checkout this fastidx runs from, if any."""
    script = Path(__file__).resolve().parents[2] / "bench" / "compare.py"
    return script if script.is_file() else None


def cmd_bench(args) -> int:
    script = _compare_script()
    extra = args.compare_args[1:] if args.compare_args[:1] == ["--"] else args.compare_args
    if extra and (script is None or args.fastidx_only):
        raise CLIError(f"options after '--' ({' '.join(extra)}) are for bench/compare.py, which "
                       + ("--fastidx-only does not run" if script is not None else "is not installed"),
                       EXIT_USAGE)
    if script is not None and not args.fastidx_only:
        import subprocess

        command = [sys.executable, str(script), *(["--quick"] if args.quick else []), *extra]
        if "--data-dir" not in extra and "--smoke" not in extra:
            files = _cached("mnist", args.cache_dir)
            if files is not None and "npz" not in files and len({p.parent for p in files.values()}) == 1:
                command += ["--data-dir", str(files["train_images"].parent)]
            else:
                from .datasets import SAMPLE_DIR

                _note("MNIST is not downloaded, so the comparison runs on the 1,200-image sample shipped "
                      "inside fastidx ('fastidx download mnist' for meaningful numbers)")
                command += ["--data-dir", str(SAMPLE_DIR)]
        if importlib.util.find_spec(BENCH_OPTIONAL) is None:
            _note("TensorFlow is not installed, so the tf.keras rows are skipped; pip install -e \".[bench]\" "
                  "(from the source checkout) adds them")
        print(f"running {' '.join(command)}", flush=True)
        return subprocess.call(command)

    from .datasets import Dataset

    if args.fastidx_only:
        why = "built-in timing (--fastidx-only)"
    else:
        why = ("built-in timing: the full comparison (fresh processes, tf.keras, first and warm loads) is "
               "bench/compare.py in fastidx's source checkout: from there, run "
               "'pip install -e \".[bench]\" && python bench/compare.py --quick'")
    print(f"fastidx {__version__} bench: {why}")
    source = _local_mnist(args.cache_dir, "MNIST is not downloaded, so these times are for 1,200 images "
                                          "('fastidx download mnist' for the real thing)")
    print(f"data: {source.description}")
    repeat = 5 if args.quick else 11
    _print_timings(_timings(Dataset("mnist"), source, args.cache_dir, repeat), repeat, source.sample)
    return EXIT_OK


# --- demo -----------------------------------------------------------------------------------------


def _reachable(url: str) -> str | None:
    """None if ``url``'s server answers within PROBE_TIMEOUT (any HTTP status), else why not."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": f"fastidx/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT):
            return None
    except urllib.error.HTTPError:
        return None  # it answered
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{urllib.parse.urlsplit(url).netloc} did not answer ({reason})"


def _demo_source(args) -> Source:
    """Full MNIST if it is local or quickly downloadable, else the embedded sample (and why)."""
    from . import _fetch
    from ._paths import cache_root

    files = _cached("mnist", args.cache_dir)
    if files is not None:
        return Source(None, f"MNIST from {_describe_files(files)}")
    if args.offline or _fetch._env_flag(_fetch.ENV_OFFLINE):
        how = "--offline" if args.offline else f"{_fetch.ENV_OFFLINE}={os.environ.get(_fetch.ENV_OFFLINE)}"
        return _sample_source(f"MNIST is not downloaded and offline mode is on ({how})")
    spec = registry.get("mnist")
    if not os.environ.get(_fetch.ENV_MIRROR):  # a mirror the user set is worth waiting for
        problem = _reachable(spec.files["train_labels"].urls[0])
        if problem:
            return _sample_source(f"could not download MNIST: {problem}")
    size = sum(f.size for f in spec.files.values())
    _note(f"MNIST is not downloaded; downloading it ({_size(size)}) into {cache_root(args.cache_dir)} "
          f"(Ctrl-C to stop; --offline uses the sample shipped inside fastidx instead)")
    try:
        files = _fetch.fetch("mnist", cache_dir=args.cache_dir)
    except KeyboardInterrupt:
        raise Interrupted("MNIST was not downloaded completely and nothing partial was kept") from None
    except (DownloadError, DatasetNotFoundError, CacheDirError) as exc:
        _drop_notes()  # what went wrong is in the one line below
        return _sample_source(f"could not download MNIST: {exc}")
    return Source(None, f"MNIST from {_describe_files(files)}")


def cmd_demo(args) -> int:
    import numpy as np

    from ._png import image_grid
    from .datasets import mnist

    source = _demo_source(args)
    print(f"fastidx {__version__} demo: loading {'the MNIST sample' if source.sample else 'MNIST'} with fastidx")
    print(f"data: {source.description}")
    start = time.perf_counter()
    (x_train, y_train), (x_test, y_test) = mnist.load_data(source.path, cache_dir=args.cache_dir)
    took = time.perf_counter() - start
    call = "mnist.load_data(path=SAMPLE_DIR)" if source.sample else "mnist.load_data()"
    print(f"\n>>> (x_train, y_train), (x_test, y_test) = {call}   # {took * 1e3:.1f} ms")
    for name, array in (("x_train", x_train), ("y_train", y_train), ("x_test", x_test), ("y_test", y_test)):
        print(f"{name:<8} {str(array.shape):<16} {array.dtype}")
    xf = mnist.load("train", source.path, cache_dir=args.cache_dir, normalize=True, layout="NHWC")[0]
    print(f'load("train", normalize=True, layout="NHWC"): {xf.shape} {xf.dtype} in '
          f"[{xf.min():.1f}, {xf.max():.1f}]")

    repeat = 5
    print("\nload times against the plain NumPy + gzip path:")
    _print_timings(_timings(mnist._dataset, source, args.cache_dir, repeat), repeat, source.sample)

    n = min(64, len(x_train))
    labels = [mnist.class_names[v] for v in y_train[:n].tolist()]
    title = f"mnist train{' (sample)' if source.sample else ''}: first {n} of {len(x_train)}"
    _write_png(args.out, image_grid(np.ascontiguousarray(x_train[:n]), labels, title=title))
    print(f"\nwrote a grid of the first {n} training images with their labels: {args.out.resolve()}")
    if source.sample:
        print("for the full dataset: fastidx download mnist (about 11 MB), then fastidx demo again")
    return EXIT_OK


# --- helpers --------------------------------------------------------------------------------------


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"

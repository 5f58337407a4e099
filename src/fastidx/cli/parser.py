"""The ``fastidx`` argument parser: every command, its options and an example.

A command's ``run`` is named as ``"module:function"`` of this package and imported only when that
command runs, so that ``fastidx --help`` and usage errors load nothing heavy.
"""

from __future__ import annotations

import argparse
import os
import textwrap
import urllib.parse
from pathlib import Path

from .. import __version__, registry
from ._common import EXIT_USAGE

#: The most images ``show`` draws in one picture: 32 x 32 MNIST digits, about 3,000 pixels square.
MAX_SHOW_IMAGES = 1024


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        self.exit(EXIT_USAGE, f"fastidx: error: {message} (see '{self.prog} --help')\n")


def dataset_arg(text: str) -> str:
    """A registry name; ``emnist.letters`` (the module spelling) is accepted too."""
    try:
        return registry.get(text.replace(".", "_")).name
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def mirror_arg(text: str) -> str:
    if urllib.parse.urlsplit(text).scheme.lower() in {"http", "https", "file"}:
        return text
    if os.path.isdir(text):  # a local mirror directory: what the user meant is its file:// URL
        return Path(text).resolve().as_uri()
    raise argparse.ArgumentTypeError(f"mirror {text!r} is not an http://, https:// or file:// URL, nor a directory")


def count_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def show_count_arg(text: str) -> int:
    value = count_arg(text)
    if value > MAX_SHOW_IMAGES:
        raise argparse.ArgumentTypeError(
            f"{value:,} images are too many for one picture: at most {MAX_SHOW_IMAGES:,} (pick a random "
            f"sample with --seed, or write several pictures)")
    return value


def size_arg(text: str) -> str:
    """A size ``fastidx.cache.prune`` accepts (checked now, for a usage error); passed on as given."""
    from ..cache import parse_size

    try:
        parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def png_arg(text: str) -> Path:
    if not text.lower().endswith(".png"):
        raise argparse.ArgumentTypeError(f"the picture is written as PNG: give a file name ending in .png, not {text!r}")
    return Path(text)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand's default must not overwrite `fastidx --debug <command>`.
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks and debug logging")
    parser = Parser(
        prog="fastidx",
        description="Fast, safe loading of IDX datasets (MNIST, Fashion-MNIST, KMNIST, EMNIST).",
        epilog=textwrap.dedent(f"""\
            first run:
              fastidx demo                  loads MNIST (or the sample shipped inside fastidx)

            datasets: {KNOWN}
            environment: FASTIDX_HOME (cache directory), FASTIDX_MIRROR (base URLs tried first),
                         FASTIDX_OFFLINE=1 (never use the network)
            'fastidx COMMAND --help' shows each command's options and an example."""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = Commands(parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser), common)
    for add in (add_download, add_info, add_show, add_cache, add_bench, add_serve, add_demo):
        add(commands)
    return parser


KNOWN = ", ".join(registry.DATASETS)


class Commands:
    """Adds a command (or a ``cache`` action) with its help, example and the shared options."""

    def __init__(self, subparsers, common):
        self.subparsers, self.common = subparsers, common
        self.cache_dir = argparse.ArgumentParser(add_help=False)
        self.cache_dir.add_argument(
            "--cache-dir", metavar="DIR",
            help="the cache directory (default: $FASTIDX_HOME, else the user cache directory)")

    def add(self, name, run, help, example, *, cache_dir=True, subparsers=None):
        sub = (subparsers or self.subparsers).add_parser(
            name, help=help, description=help[0].upper() + help[1:] + ".",
            epilog="example:\n  " + "\n  ".join(example.splitlines()),
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[self.common, *([self.cache_dir] if cache_dir else [])],
        )
        sub.set_defaults(run=run)
        return sub


def add_download(commands: Commands) -> None:
    p = commands.add("download", "download:run", "fetch datasets into the cache and verify them",
                     "fastidx download mnist fashion_mnist\n"
                     "fastidx download mnist --mirror http://mirror.example/datasets   "
                     "# files at <URL>/mnist/<file>")
    p.add_argument("datasets", nargs="+", type=dataset_arg, metavar="DATASET", help=f"one of: {KNOWN}")
    p.add_argument("--mirror", action="append", type=mirror_arg, metavar="URL",
                   help="a base URL (or directory) tried before $FASTIDX_MIRROR and the official "
                        "mirrors; repeatable")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown on a terminal)")


def add_info(commands: Commands) -> None:
    p = commands.add("info", "info:run", "describe a dataset: files, hashes, cache state, shapes, class names",
                     "fastidx info fashion_mnist\nfastidx info mnist --path ~/data/mnist")
    p.add_argument("dataset", type=dataset_arg, metavar="DATASET", help=f"one of: {KNOWN}")
    p.add_argument("--path", metavar="DIR",
                   help="describe the files in DIR (or a Keras .npz) instead of the cache, decoding each")


def add_show(commands: Commands) -> None:
    p = commands.add("show", "show:run", "write a grid of sample images with their class names as PNG",
                     "fastidx show mnist --out digits.png\n"
                     "fastidx show fashion_mnist --split test --n 25 --seed 1 --out fashion.png")
    p.add_argument("dataset", type=dataset_arg, metavar="DATASET", help=f"one of: {KNOWN}")
    p.add_argument("--out", required=True, type=png_arg, metavar="FILE.png", help="where to write the picture")
    p.add_argument("--path", metavar="DIR",
                   help="read the files from DIR (or a Keras .npz); default: the cache, and for mnist "
                        "the sample shipped inside fastidx when MNIST is not downloaded")
    p.add_argument("--split", choices=("train", "test"), default="train", help="default: train")
    p.add_argument("--n", type=show_count_arg, default=64, metavar="N",
                   help=f"number of images, at most {MAX_SHOW_IMAGES:,} (default: 64)")
    p.add_argument("--seed", type=int, metavar="SEED",
                   help="show a random sample drawn with this seed (default: the first N images)")
    p.add_argument("--download", action="store_true", help="download the dataset if it is not cached")


def add_cache(commands: Commands) -> None:
    p = commands.add("cache", None, "list, verify, clear or prune what the cache holds",
                     "fastidx cache list\nfastidx cache verify\nfastidx cache clear fashion_mnist --yes\n"
                     "fastidx cache prune --max-size 500MB", cache_dir=False)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=Parser)
    for name, run, help, example in (
        ("list", "cache:run_list", "list the decoded arrays and downloaded files in the cache, with their sizes",
         "fastidx cache list"),
        ("verify", "cache:run_verify", "check every entry of the decoded-array cache completely; exit status 1 "
         "if one is damaged (downloaded files are checked against their official hashes whenever they are used)",
         "fastidx cache verify"),
        ("clear", "cache:run_clear", "delete the decoded arrays (all, or one dataset's); downloaded files are kept",
         "fastidx cache clear kmnist --yes"),
    ):
        a = commands.add(name, run, help, example, subparsers=actions)
        a.add_argument("dataset", nargs="?", type=dataset_arg, metavar="DATASET",
                       help="only this dataset (default: everything)")
        if name == "clear":
            a.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    a = commands.add("prune", "cache:run_prune",
                     "remove the least recently used decoded arrays (uncompressed files first) until the cache "
                     "fits its size budget; downloaded files are never pruned",
                     "fastidx cache prune --max-size 500MB", subparsers=actions)
    a.add_argument("--max-size", type=size_arg, metavar="SIZE",
                   help="the budget: bytes, or 500MB, 1.5GiB, unlimited (default: $FASTIDX_CACHE_MAX_SIZE, "
                        "else the cache directory's setting, else 2 GiB)")


def add_bench(commands: Commands) -> None:
    p = commands.add("bench", "bench:run",
                     "time fastidx against plain NumPy + gzip (and tf.keras, with the [bench] extras)",
                     "fastidx bench --quick")
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    p.add_argument("--fastidx-only", action="store_true",
                   help="the built-in timing only, even when bench/compare.py is there")
    p.add_argument("compare_args", nargs=argparse.REMAINDER, metavar="-- ARGS",
                   help="after '--': options for bench/compare.py (see 'python bench/compare.py --help')")


def add_serve(commands: Commands) -> None:
    p = commands.add("serve", "serve:run", "serve the cache's verified dataset files read-only over HTTP, as a "
                     "mirror for machines without internet",
                     "fastidx serve --bind 0.0.0.0 --port 8000   # then on each node: "
                     "FASTIDX_MIRROR=http://<this host>:8000")
    p.add_argument("--bind", default="127.0.0.1", metavar="ADDRESS",
                   help="the address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, metavar="PORT", help="default: 8000")
    p.add_argument("--log", action="store_true", help="log each request on stderr")


def add_demo(commands: Commands) -> None:
    p = commands.add("demo", "demo:run",
                     "load MNIST, compare load times with plain NumPy + gzip, write a sample grid",
                     "fastidx demo\nFASTIDX_OFFLINE=1 fastidx demo --out /tmp/digits.png")
    p.add_argument("--out", type=png_arg, default=Path("fastidx-demo.png"), metavar="FILE.png",
                   help="where to write the grid (default: ./fastidx-demo.png)")
    p.add_argument("--offline", action="store_true",
                   help="never use the network (like FASTIDX_OFFLINE=1): the cache, else the sample")

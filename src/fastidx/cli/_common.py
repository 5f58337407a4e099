"""What every command shares: exit statuses, one-line errors, held library messages, sizes, the
confirmation prompt, and where a command finds a dataset's files."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from .. import DatasetNotFoundError, FastIDXError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class CLIError(Exception):
    """A problem the user can fix: printed as one line, exit status ``status``."""

    def __init__(self, message: str, status: int = EXIT_FAILURE):
        super().__init__(message)
        self.status = status


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what the user should know about the state it left."""


# --- messages -------------------------------------------------------------------------------------


def describe(exc: BaseException) -> str:
    if isinstance(exc, (CLIError, FastIDXError)) or not isinstance(exc, OSError) or not exc.strerror:
        return str(exc)
    return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror


def error(message: str) -> None:
    print(f"fastidx: error: {message}", file=sys.stderr, flush=True)


def note(message: str) -> None:
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
        message = record.getMessage()
        self.lines.append(message if message.startswith("fastidx: ") else f"fastidx: {message}")

    def warn(self, message, category, filename, lineno, file=None, line=None) -> None:
        self.lines.append(f"fastidx: warning: {message}")

    def flush_to(self, stream) -> None:
        for line in dict.fromkeys(self.lines):  # once each: a warning repeated per file is one line
            print(line, file=stream)
        stream.flush()
        self.lines.clear()


def configure_output(debug: bool) -> _Held | None:
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


def flush_notes() -> None:
    """Print the library's held records now (after a step that succeeded)."""
    if _held is not None:
        _held.flush_to(sys.stderr)


def drop_notes() -> None:
    """Forget the held records of a step whose failure is reported in one line that says it all."""
    if _held is not None:
        _held.lines.clear()


def human_size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 file``, ``2 files``; ``plural(2, "entry", "entries")``."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def confirm(question: str) -> None:
    """Ask on the terminal; without one, refuse instead of waiting for input that never comes."""
    if sys.stdin is None or not sys.stdin.isatty():
        raise CLIError(f"{question[:-1]}: refusing without confirmation (stdin is not a terminal); add --yes")
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        answer = ""
    if answer.strip().lower() not in {"y", "yes"}:
        raise CLIError("nothing was deleted")


def offline_by_environment() -> str | None:
    """``FASTIDX_OFFLINE=...`` when it asks for offline mode (the rule the library applies), else None."""
    value = os.environ.get("FASTIDX_OFFLINE", "")
    return None if value.strip().lower() in {"", "0", "false", "no", "off"} else f"FASTIDX_OFFLINE={value}"


# --- where the data come from ---------------------------------------------------------------------


@dataclass
class Source:
    """Where a command reads a dataset from: ``path`` for ``load(..., path)``; None is the cache."""

    path: Path | None
    description: str
    sample: bool = False


def cached(name: str, cache_dir) -> dict | None:
    """The dataset's verified local files, without using the network; None if they are not all there."""
    from .. import datasets

    try:
        return datasets.get(name).files(cache_dir=cache_dir, offline=True, progress=False)
    except DatasetNotFoundError:
        return None


def describe_files(files: dict) -> str:
    if "npz" in files:
        return f"Keras's {files['npz']}"
    return str(files["train_images"].parent)


def sample_source(reason: str) -> Source:
    from ..datasets import SAMPLE_DIR

    return Source(SAMPLE_DIR, f"the MNIST sample shipped inside fastidx ({SAMPLE_DIR}); {reason}", sample=True)


def local_mnist(cache_dir, missing_reason: str) -> Source:
    """MNIST from the cache, else the sample (with ``missing_reason``)."""
    files = cached("mnist", cache_dir)
    if files is not None:
        return Source(None, f"MNIST from {describe_files(files)}")
    return sample_source(missing_reason)


def tree_size(directory: Path) -> tuple[int, int]:
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

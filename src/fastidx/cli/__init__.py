"""The ``fastidx`` command line (also ``python -m fastidx``): one module per command.

::

    fastidx demo                                 # demo.py: first run, MNIST or the embedded sample
    fastidx download mnist fashion_mnist         # download.py: fetch and verify into the cache
    fastidx info kmnist                          # info.py: files, hashes, cache state, shapes, classes
    fastidx show fashion_mnist --out grid.png    # show.py (+ grid.py, Pillow): a labelled picture
    fastidx cache list | verify | clear          # cache.py: what the cache holds
    fastidx bench --quick                        # bench.py (+ timing.py): the benchmark

``parser.py`` declares every command and option; ``_common.py`` holds what the commands share.
Commands use the library's public API: :mod:`fastidx.datasets`, :mod:`fastidx.cache`,
:mod:`fastidx.registry`. Errors a user can fix are one line on stderr, ``fastidx: error: ...``, exit
status 2 for usage and 1 otherwise (``--debug`` adds the traceback); Ctrl-C exits with 130.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

from .. import FastIDXError
from ._common import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CLIError,
    Interrupted,
    configure_output,
    describe,
    error,
)
from .parser import build_parser

__all__ = ["CLIError", "build_parser", "main"]


def main(argv=None) -> int:
    """Run the ``fastidx`` command with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    debug = getattr(args, "debug", False)
    held = configure_output(debug)
    try:
        module, function = args.run.split(":")
        run = getattr(importlib.import_module(f".{module}", __name__), function)
        status = run(args) or EXIT_OK
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
        error(describe(exc))
        return getattr(exc, "status", EXIT_FAILURE)
    except Exception as exc:  # a bug: say so in one line, keep the traceback for --debug
        if debug:
            raise
        error(f"internal error ({type(exc).__name__}: {exc}); run again with --debug for the traceback "
              f"and please report it")
        return EXIT_FAILURE

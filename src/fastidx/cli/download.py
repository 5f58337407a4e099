"""``fastidx download DATASET...``: fetch into the cache and verify against the official hashes."""

from __future__ import annotations

from .. import datasets
from .. import CacheDirError, DatasetNotFoundError, DownloadError
from ._common import (
    EXIT_FAILURE,
    EXIT_OK,
    Interrupted,
    drop_notes,
    error,
    flush_notes,
    human_size,
    plural,
)


def run(args) -> int:
    progress = False if args.no_progress else None
    failed = 0
    for name in dict.fromkeys(args.datasets):
        try:
            files = datasets.get(name).files(cache_dir=args.cache_dir, mirrors=args.mirror, progress=progress)
        except KeyboardInterrupt:
            raise Interrupted(
                f"{name} was not downloaded completely and nothing partial was kept; run the same command "
                f"again to download it"
            ) from None
        except CacheDirError:
            raise  # the same for every dataset: say it once
        except (DownloadError, DatasetNotFoundError) as exc:  # ChecksumError is a DownloadError
            drop_notes()  # the one line below says what went wrong
            message = str(exc)
            error(message if message.startswith(name) else f"{name}: {message}")
            failed += 1
            continue
        flush_notes()
        total = sum(path.stat().st_size for path in files.values())
        print(f"{name}: {plural(len(files), 'file')} verified ({human_size(total)})")
        for path in files.values():
            print(f"  {path}")
    return EXIT_FAILURE if failed else EXIT_OK

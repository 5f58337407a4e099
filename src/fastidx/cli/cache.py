"""``fastidx cache list | verify | clear | prune``: the decoded-array cache (:mod:`fastidx.cache`) and, for
``list`` and ``clear``'s report, the downloaded files beside it (which loads verify whenever they
use them, and which ``clear`` never deletes)."""

from __future__ import annotations

from pathlib import Path

from .. import cache, registry
from .._paths import cache_root
from ._common import (
    EXIT_FAILURE,
    EXIT_OK,
    confirm,
    error,
    human_size,
    plural,
    tree_size,
)


def entries_of(cache_dir, dataset: str | None = None) -> list:
    return [e for e in cache.list_entries(cache_dir=cache_dir) if dataset is None or e.dataset == dataset]


def entries_text(n: int) -> str:
    return plural(n, "cache entry", "cache entries")


def download_dirs(root: Path, dataset: str | None) -> list[tuple[str, Path, int, int]]:
    """(datasets, directory, bytes, files) of every non-empty download directory."""
    names: dict[str, list[str]] = {}
    for spec in registry.DATASETS.values():
        if dataset is None or spec.name == dataset:
            names.setdefault(spec.dir_name, []).append(spec.name)
    rows = []
    for dir_name, datasets in names.items():
        size, count = tree_size(root / dir_name)
        if count:
            label = dir_name if len(datasets) > 1 and dataset is None else ", ".join(datasets)
            rows.append((label, root / dir_name, size, count))
    return rows


def run_list(args) -> int:
    root = cache_root(args.cache_dir)
    entries = entries_of(args.cache_dir, args.dataset)
    downloads = download_dirs(root, args.dataset)
    if not entries and not downloads:
        print(f"nothing cached in {root}" + (f" for {args.dataset}" if args.dataset else ""))
        return EXIT_OK
    if entries:
        print(f"decoded arrays in {cache.info(cache_dir=args.cache_dir).directory}:")
        by_dataset: dict[str, list] = {}
        for entry in entries:
            by_dataset.setdefault(entry.dataset or "(unknown)", []).append(entry)
        for name, group in by_dataset.items():
            print(f"  {name}: {human_size(sum(e.size_on_disk for e in group))} in "
                  f"{plural(len(group), 'entry', 'entries')}")
            for e in group:
                shape = "x".join(map(str, e.shape))
                print(f"    {human_size(e.size_on_disk):>9}  {e.source_name:<32} {shape} {e.dtype}  "
                      f"({e.description})")
    if downloads:
        print(f"downloaded files in {root}:")
        for label, directory, size, count in downloads:
            print(f"  {label}: {human_size(size)} in {plural(count, 'file')}  ({directory})")
    total = sum(e.size_on_disk for e in entries) + sum(row[2] for row in downloads)
    print(f"total: {human_size(total)}")
    return EXIT_OK


def run_verify(args) -> int:
    results = cache.verify(cache_dir=args.cache_dir)
    if args.dataset is not None:
        # An entry whose header is damaged cannot say whose it is: it is reported for every dataset.
        everything = cache.list_entries(cache_dir=args.cache_dir)
        mine = {e.path for e in everything if e.dataset == args.dataset}
        readable = {e.path for e in everything}
        results = [r for r in results if r.path in mine or (not r.ok and r.path not in readable)]
    broken = [r for r in results if not r.ok]
    for r in broken:
        error(f"damaged cache entry {r.path}: {r.reason}")
    if broken:
        print(f"{len(broken)} of {len(results)} cache entries are damaged; a load rebuilds them from their "
              f"source, 'fastidx cache clear' deletes them")
        return EXIT_FAILURE
    print(f"all {len(results)} cache entries are intact" if results else "the cache has no entries to verify")
    return EXIT_OK


def run_clear(args) -> int:
    root = cache_root(args.cache_dir)
    directory = cache.info(cache_dir=args.cache_dir).directory
    entries = entries_of(args.cache_dir, args.dataset)
    count, size = len(entries), sum(e.size_on_disk for e in entries)
    what = f"decoded arrays{' of ' + args.dataset if args.dataset else ''}"
    if count == 0:
        print(f"nothing to delete: no {what} in {directory}")
    else:
        if not args.yes:
            confirm(f"delete {entries_text(count)} ({human_size(size)} of {what}) in {directory}?")
        cleared = cache.clear(dataset=args.dataset, cache_dir=args.cache_dir)
        # Entries, as asked about: the source index and lock files that go with them are not data.
        left = len(entries_of(args.cache_dir, args.dataset))
        print(f"deleted {entries_text(max(count - left, 0))} ({human_size(cleared.bytes)}) of {what} from "
              f"{directory}" + (f"; {entries_text(left)} written meanwhile by another process were kept"
                                if left else ""))
    downloads = download_dirs(root, args.dataset)
    if downloads:
        kept = sum(row[2] for row in downloads)
        places = ", ".join(str(row[1]) for row in downloads)
        print(f"kept the downloaded files ({human_size(kept)} in {places}); delete them by hand if you want "
              f"the space back (they will be downloaded again when needed)")
    return EXIT_OK


def run_prune(args) -> int:
    result = cache.prune(max_size=args.max_size, cache_dir=args.cache_dir)
    directory = cache.info(cache_dir=args.cache_dir).directory
    budget = "no limit" if result.max_size is None else human_size(result.max_size)
    for entry in result.removed:
        print(f"  removed {human_size(entry.size_on_disk):>9}  {entry.source_name} ({entry.description})")
    print(f"pruned {entries_text(len(result.removed))} ({human_size(result.bytes)}) from {directory}: the "
          f"decoded arrays now take {human_size(result.remaining_bytes)} (budget: {budget}); downloaded "
          f"files are never pruned")
    return EXIT_OK

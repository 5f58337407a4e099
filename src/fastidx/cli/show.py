"""``fastidx show DATASET --out FILE.png``: a grid of sample images with their class names."""

from __future__ import annotations

from pathlib import Path

from .. import datasets
from ._common import (
    EXIT_OK,
    CLIError,
    Interrupted,
    Source,
    cached,
    describe_files,
    note,
    sample_source,
)
from .grid import image_grid, label_text, write_png


def run(args) -> int:
    import numpy as np

    name = args.dataset
    if args.path is not None:
        source = Source(Path(args.path).expanduser(), str(args.path))
    else:
        files = cached(name, args.cache_dir)
        if files is not None:
            source = Source(None, describe_files(files))
        elif args.download:
            source = Source(None, "the cache (downloaded now)")
        elif name == "mnist":
            source = sample_source("MNIST is not downloaded ('fastidx download mnist' gets it)")
            note(f"showing {source.description}")
        else:
            raise CLIError(
                f"{name} is not downloaded: run 'fastidx download {name}' (or add --download), or pass "
                f"--path DIR with its files"
            )
    dataset = datasets.get(name)
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
    write_png(args.out, grid)
    print(f"wrote {args.out}: {n} {args.split} images of {name}{sample} with their class names "
          f"({grid.width}x{grid.height} pixels)")
    return EXIT_OK

"""``fastidx info DATASET``: files, official hashes, cache state, shapes and class names.

With ``--path DIR`` it describes the files in ``DIR`` instead, decoding each one completely (a
piece at a time) so that a truncated or damaged file is reported as such.
"""

from __future__ import annotations

from pathlib import Path

from .. import cache, datasets, read_header, registry
from .. import DatasetNotFoundError, IDXError
from .._paths import cache_root
from ._common import EXIT_OK, CLIError, human_size, plural, tree_size
from .grid import label_text


def run(args) -> int:
    spec = registry.get(args.dataset)
    dataset = datasets.get(spec.name)
    root = cache_root(args.cache_dir)
    if args.path is not None:
        local = dataset.files(args.path)
        where = f"{args.path} (files found there are not checked against the official hashes)"
    else:
        try:
            local = dataset.files(cache_dir=args.cache_dir, offline=True, progress=False)
        except DatasetNotFoundError:
            # files() just verified every file that is there and set aside any that failed, so
            # what is still in the cache is verified; the rest is missing.
            directory = root / spec.dir_name
            local = {role: directory / file.name for role, file in spec.files.items()
                     if (directory / file.name).is_file()}
        where = f"{root}"

    damaged: list[str] = []
    lines = [f"{spec.name}: {sum(spec.splits.values()):,} images of {shape_text(spec.image_shape)}, "
             f"{spec.num_classes} classes" + (" (stored transposed; loaded upright)" if spec.transposed else "")]
    lines.append("classes   " + wrap(class_list(spec), 10))
    lines.append("splits    " + "  ".join(f"{split} {n:,}" for split, n in spec.splits.items()) + " (official)")
    for split in ("train", "test"):
        lines.append(f"  {split:<6}  " + split_shapes(spec, split, local))
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
            problem = check_idx(path)
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
    lines.append("cache     " + cache_usage(root, spec, args.cache_dir))
    print("\n".join(lines), flush=True)
    if damaged:
        raise CLIError("; ".join(damaged))
    return EXIT_OK


def check_idx(path: Path) -> str | None:
    """None if ``path`` is a complete IDX file (gzip CRC and length included), else what is wrong.

    Decoded in pieces and dropped, so memory stays small whatever the file's size.
    """
    from .. import IDXReader  # the library's one decoder, used piecewise

    try:
        with IDXReader(path) as reader:
            reader.skip_rows(reader.rows)
            reader.finish()
    except IDXError as exc:
        return str(exc)
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    return None


def shape_text(shape) -> str:
    return "x".join(str(d) for d in shape)


def class_list(spec: registry.DatasetSpec) -> list[str]:
    names = []
    for i, name in enumerate(spec.class_names[spec.first_label:], start=spec.first_label):
        if name == str(i):  # digits: the label is the name
            names.append(name)
        else:
            readable = label_text(name, i)
            names.append(f"{i}={name}" + (f" ({readable})" if readable != name and not readable.isdigit() else ""))
    return names


def wrap(items: list[str], indent: int, width: int = 100) -> str:
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


def split_shapes(spec, split: str, local: dict) -> str:
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


def cache_usage(root: Path, spec: registry.DatasetSpec, cache_dir) -> str:
    size, count = tree_size(root / spec.dir_name)
    if count:
        text = f"{root / spec.dir_name}: {human_size(size)} in {plural(count, 'file')}"
        if spec.archive is not None:
            text += " (shared by all EMNIST splits)"
    else:
        text = f"nothing downloaded in {root / spec.dir_name}"
    entries = [e for e in cache.list_entries(cache_dir=cache_dir) if e.dataset == spec.name]
    if entries:
        decoded = sum(e.size_on_disk for e in entries)
        text += f"; decoded arrays: {human_size(decoded)} in {plural(len(entries), 'entry', 'entries')}"
    return text

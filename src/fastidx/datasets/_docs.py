"""The loaders' parameter documentation, written once and shown by every public loader.

:func:`documented` inserts the numpydoc ``Parameters`` section of a function's own parameters into
its docstring, so ``help(mnist.load_data)`` and IDEs show each parameter of the real signature.
"""

#: What each loader parameter means: the one description every public loader's docstring shows.
PARAMETERS = {
    "split": """str
    ``"train"`` or ``"test"``, optionally sliced TFDS-style: ``"train[:6000]"``,
    ``"train[10%:20%]"``, ``"test[-1000:]"``. Bounds are row numbers (negative ones count from the
    end) or whole percentages from -100 to 100; a percentage ``p`` of ``n`` rows is row
    ``round(p * n / 100)`` (exact arithmetic, ties to even: TFDS's ``closest`` rounding), then
    Python slice rules apply. Only the needed frames of the cache are decoded.""",
    "batch_size": """int
    Rows per batch.""",
    "shuffle": """bool
    Visit the rows in the order of ``numpy.random.default_rng(seed).permutation(rows)``, every row
    once per pass, gathered from the uncompressed cache file (written on first use; a temporary
    file when ``cache=False``).""",
    "seed": """int, optional
    Seed of the permutation: a seed always gives the same order.""",
    "drop_remainder": """bool
    Drop a last batch smaller than ``batch_size``.""",
    "path": """str or os.PathLike, optional
    A directory holding the IDX files (gzipped or not, ``-idx`` or ``.idx`` spellings; a split
    needs only its own two files) or a Keras-format ``.npz`` file. For MNIST a bare file name
    ending in ``.npz`` (Keras's ``path="mnist.npz"``) means what it means to Keras: that file in
    Keras's cache directory (see the README's "Keras compatibility"). Default: the downloaded
    copy.""",
    "dtype": """dtype, optional
    Image dtype; default uint8, or float32 when ``normalize``, ``mean`` or ``std`` is given.""",
    "normalize": """bool
    Scale images to [0, 1]: exactly ``x.astype(dtype) / dtype(255)``.""",
    "mean": """float, optional
    Standardize on the [0, 1] scale, with or without ``normalize`` (torchvision's ``Normalize``
    after ``ToTensor``): exactly ``(x.astype(dtype) / dtype(255) - mean) / std`` in ``dtype``.""",
    "std": """float, optional
    The divisor of that standardization; it must be positive (``ValueError`` otherwise).""",
    "layout": """{None, "NHWC", "NCHW", "flat"}
    Images as stored (N, H, W), or (N, H, W, 1), (N, 1, H, W), (N, H*W).""",
    "one_hot": """bool
    Labels as float32 one-hot rows, as ``keras.utils.to_categorical`` makes them; a label outside
    ``range(len(class_names))`` or a non-integer label is a ``ValueError`` naming the file.""",
    "raw": """bool
    EMNIST only: keep the images transposed, as NIST stores them.""",
    "cache": """bool
    Keep the decoded arrays in the cache directory (zstd-compressed) after the first load, so that
    later loads skip parsing; an entry is keyed by its source file's SHA-256.""",
    "cache_dir": """str or os.PathLike, optional
    Cache directory (default: ``$FASTIDX_HOME`` or the user cache directory).""",
    "mmap": """bool
    Return copy-on-write memory maps of uncompressed cache files (written on first use): a load
    costs well under a millisecond and processes share one physical copy; writes to the arrays
    stay private. Needs ``cache=True``; ``.npz`` sources are loaded normally.""",
    "max_memory": """int or "auto", optional
    Refuse, with :class:`fastidx.MemoryLimitError` (a ``MemoryError`` and a ``ValueError``)
    raised before allocating, a load whose arrays would take more bytes (``load_data``: both
    splits together; ``iter_batches``: one batch plus the working buffers). Memory maps cost no
    private memory and are not counted. From an ``.npz`` the stored rows are read before they
    are converted, so both count. ``"auto"`` and the default ``None``: what the process's memory
    cgroup (Linux, v1 or v2) still allows, less 4 MiB for working buffers; no limit without one.""",
    "mirrors": """str or list of str, optional
    Base URLs tried first when files must be downloaded (see the README).""",
    "progress": """bool, optional
    Show download progress on stderr; default: when stderr is a terminal.""",
    "shard": """(int, int), optional
    ``(index, count)``, e.g. ``(rank, world_size)``: one rank's rows. In order (``load``,
    ``iter_batches`` without shuffle) the ``index``-th of ``count`` contiguous blocks, decoding
    only those; shuffled, the stride ``perm[index::count]`` of the permutation every rank draws
    alike (``torch.utils.data.DistributedSampler``'s rule without padding; needs ``seed``). The
    ``count`` shards together hold every row exactly once.""",
    "epoch": """int, optional
    Seed the shuffled permutation with ``seed + epoch``: a new order each epoch, the same on every
    rank.""",
}


def documented(func):
    """Insert the numpydoc ``Parameters`` section of ``func``'s own parameters (from
    :data:`PARAMETERS`) into its docstring, before its ``Returns`` (or ``Examples``) section."""
    doc = func.__doc__
    if not doc:  # python -OO
        return func
    code = func.__code__
    names = [name for name in code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
             if name != "self"]
    body = [line for line in doc.splitlines()[1:] if line.strip()]
    indent = min((len(line) - len(line.lstrip()) for line in body), default=0) * " "
    section = _section(tuple(names), indent)
    for heading in ("Returns", "Examples", "Example"):
        at = doc.find(f"\n{indent}{heading}\n")
        if at >= 0:
            func.__doc__ = doc[: at + 1] + section + doc[at + 1 :]
            return func
    func.__doc__ = doc.rstrip() + "\n\n" + section
    return func


_SECTIONS: dict[tuple[tuple[str, ...], str], str] = {}


def _section(names: tuple[str, ...], indent: str) -> str:
    """The ``Parameters`` section of ``names``, made once per list of names (every dataset's
    ``load_data`` shares one)."""
    key = (names, indent)
    if key not in _SECTIONS:
        lines = ["Parameters", "----------"]
        for name in names:
            lines.extend(f"{name} : {PARAMETERS[name]}".splitlines())
        _SECTIONS[key] = "".join(f"{indent}{line}\n" for line in lines) + "\n"
    return _SECTIONS[key]

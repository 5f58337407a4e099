"""Each dataset's public functions (``mnist.load_data``, ``emnist.letters.load`` ...), built once.

The signatures of ``load_data``, ``load`` and ``iter_batches`` are written once, on the methods of
:class:`~fastidx.datasets._loader.Dataset`. A dataset gets real functions of its own from them: the
same parameters and defaults (without ``raw`` unless the dataset has transposed images), its own
docstring (with the parameters' documentation from :mod:`._docs`), and Python's own ``TypeError``
naming the function for an unknown keyword. Each is compiled from
``def load_data(path, *, dtype, ...): return Dataset.load_data(dataset, path, dtype=dtype, ...)``, once
per signature, and given the dataset's globals and defaults, as :mod:`dataclasses` builds
``__init__``: no ``**kwargs`` to hide the parameters from ``help()``, ``inspect`` and IDEs, no body
repeated per dataset.
"""

from __future__ import annotations

import builtins
import sys
import types

from ._docs import documented

#: The public functions of every dataset, in the order dataset modules define them.
NAMES = ("load_data", "load", "iter_batches")

_CODE: dict[tuple[str, bool], types.CodeType] = {}


def functions(dataset, module: str, about: dict[str, str], *, prefix: str = "",
              raw: bool = False) -> tuple[types.FunctionType, ...]:
    """``load_data``, ``load`` and ``iter_batches`` of ``dataset``, as functions of ``module``.

    ``about`` holds what the docstrings say of the dataset (see :func:`docstrings`); ``prefix``
    makes the qualified name (``"letters."`` gives ``letters.load_data``, which an unknown
    keyword's ``TypeError`` shows); ``raw=True`` keeps the ``raw`` parameter.
    """
    # The class's methods, called explicitly: an EMNIST split's functions are its own attributes.
    namespace = {"__builtins__": builtins, "__name__": module, "_dataset": dataset,
                 "_Dataset": type(dataset)}
    docs = docstrings({"module": module.rsplit(".", 1)[-1], **about})
    return tuple(_function(name, namespace, docs[name], prefix + name, raw) for name in NAMES)


def docstrings(about: dict[str, str]) -> dict[str, str]:
    """Each function's docstring for a dataset described by ``about``: ``module`` (what to import
    from ``fastidx.datasets``), ``title`` ("MNIST"),
    ``summary`` (a paragraph), ``classes`` (a paragraph), ``licence`` (the License section) and
    ``licence_line`` (one line); optional ``keras`` (the ``keras.datasets`` module returning the
    same arrays), ``call`` (how the functions are reached, default ``module``), ``train`` and
    ``test`` (rows, default 60000 and 10000), ``labels`` (default "0-9"), ``images`` (words on
    the images, default "grayscale pixels 0-255")."""
    facts = {"train": 60000, "test": 10000, "labels": "0-9", "images": "grayscale pixels 0-255",
             **about}
    facts.setdefault("call", facts["module"])
    facts["train_tenth"] = round(facts["train"] / 10)
    keras = facts.get("keras")
    facts["as_keras"] = f", as ``keras.datasets.{keras}.load_data()`` returns them" if keras else ""
    return {name: template.format(**facts) for name, template in _TEMPLATES.items()}


def _function(name: str, namespace: dict, doc: str, qualname: str, raw: bool):
    method = _method(name)
    func = types.FunctionType(_code(name, raw), namespace, name, method.__defaults__)
    func.__kwdefaults__ = {key: value for key, value in method.__kwdefaults__.items()
                           if raw or key != "raw"}
    func.__qualname__ = qualname
    func.__doc__ = doc
    return documented(func)


def _method(name: str):
    """The undecorated method of :class:`Dataset` that declares the signature."""
    from ._loader import Dataset

    method = getattr(Dataset, name)
    while hasattr(method, "__wrapped__"):
        method = method.__wrapped__
    return method


def _code(name: str, raw: bool) -> types.CodeType:
    """``def name(<the method's parameters but self>): return _Dataset.name(_dataset, <them>)``,
    compiled."""
    key = (name, raw)
    if key not in _CODE:
        code = _method(name).__code__
        positional = code.co_varnames[1 : code.co_argcount]  # without self
        end = code.co_argcount + code.co_kwonlyargcount
        keywords = [p for p in code.co_varnames[code.co_argcount : end] if raw or p != "raw"]
        parameters = ", ".join([*positional, *(["*", *keywords] if keywords else [])])
        arguments = ", ".join([*positional, *(f"{p}={p}" for p in keywords)])
        source = f"def {name}({parameters}): return _Dataset.{name}(_dataset, {arguments})"
        # Compiled as this file's line above, which tracebacks then show; and as fastidx's own
        # code, which warnings skip to point at the caller's line (fastidx._errors._stacklevel).
        line = sys._getframe().f_lineno - 3
        compiled = {}
        exec(compile("\n" * (line - 1) + source, __file__, "exec"), compiled)
        _CODE[key] = compiled[name].__code__
    return _CODE[key]


_TEMPLATES = {
    "load_data": """Load the {title} dataset: ``(x_train, y_train), (x_test, y_test)``.

    {summary}

    With the default options{as_keras}:

    - ``x_train``: uint8 array of shape ({train}, 28, 28), {images};
    - ``y_train``: uint8 array of shape ({train},), labels {labels};
    - ``x_test``: uint8 array of shape ({test}, 28, 28);
    - ``y_test``: uint8 array of shape ({test},).

    {classes}

    Returns
    -------
    ((numpy.ndarray, numpy.ndarray), (numpy.ndarray, numpy.ndarray))
        ``(x_train, y_train), (x_test, y_test)``.

    Examples
    --------
    >>> from fastidx.datasets import {module}
    >>> (x_train, y_train), (x_test, y_test) = {call}.load_data()  # doctest: +SKIP
    >>> assert x_train.shape == ({train}, 28, 28) and y_train.shape == ({train},)  # doctest: +SKIP
    >>> (x, y), _ = {call}.load_data(normalize=True, layout="NHWC")  # doctest: +SKIP
    >>> x.shape, x.dtype  # doctest: +SKIP
    (({train}, 28, 28, 1), dtype('float32'))

    License
    -------
    {licence}
    """,
    "load": """One split of the {title} dataset, or a slice of it: ``(x, y)``.

    ``load("train")`` is ``(x_train, y_train)`` of :func:`load_data`: uint8 ({train}, 28, 28) images
    and uint8 ({train},) labels {labels}; ``load("test")`` has {test:,} rows. A slice such as
    ``"train[:10%]"`` decodes only the rows it needs.
    Licence: {licence_line}.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``(x, y)``: the images and their labels.

    Examples
    --------
    >>> from fastidx.datasets import {module}
    >>> x, y = {call}.load("train[:10%]", normalize=True)  # doctest: +SKIP
    >>> x.shape, x.dtype, y.shape  # doctest: +SKIP
    (({train_tenth}, 28, 28), dtype('float32'), ({train_tenth},))
    """,
    "iter_batches": """Yield ``(x, y)`` batches of one {title} split (or slice), never holding it all.

    Each batch is a new array of at most ``batch_size`` rows of the split's images (uint8 rows of
    the ({train}, 28, 28) training or ({test}, 28, 28) test array by default) and labels (uint8,
    {labels}), converted as :func:`load` converts them; in between, at most one zstd frame (about
    1 MiB of decoded rows) is held.

    Yields
    ------
    (numpy.ndarray, numpy.ndarray)
        A batch of images and their labels.

    Examples
    --------
    >>> from fastidx.datasets import {module}
    >>> for x, y in {call}.iter_batches("train", 256, shuffle=True, seed=0):  # doctest: +SKIP
    ...     pass
    """,
}

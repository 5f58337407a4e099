"""TFDS-style split strings: ``"train"``, ``"train[:6000]"``, ``"train[10%:20%]"``, ``"test[-1000:]"``."""

from __future__ import annotations

import re

SPLITS = {"train": ("train_images", "train_labels"), "test": ("test_images", "test_labels")}

_BOUND = r"\s*([+-]?\d+)\s*(%?)\s*"
_SPLIT = re.compile(rf"\s*(\w+)\s*(?:\[(?:{_BOUND})?:(?:{_BOUND})?\]\s*)?")
_SPLIT_HELP = (
    "'train' or 'test', optionally sliced like 'train[:6000]', 'train[10%:20%]' or 'test[-1000:]' "
    "(integer row numbers or whole percentages from -100% to 100%)"
)


def parse_split(split, dataset: str = "dataset"):
    """``(split name, select)`` where ``select(n)`` gives the ``(start, stop)`` rows of a slice.

    >>> name, select = parse_split("train[10%:-1000]")
    >>> name, select(60000)
    ('train', (6000, 59000))
    """
    if not isinstance(split, str):
        raise TypeError(f"{dataset}: split must be a string such as 'train', not {split!r}")
    match = _SPLIT.fullmatch(split)
    if match is None or match.group(1) not in SPLITS:
        raise ValueError(f"{dataset}: bad split {split!r}: expected {_SPLIT_HELP}")
    name, a, a_pct, b, b_pct = match.groups()
    bounds = []
    for value, pct in ((a, a_pct), (b, b_pct)):
        if value is None:
            bounds.append(None)
            continue
        value = int(value)
        if pct and not -100 <= value <= 100:
            raise ValueError(
                f"{dataset}: bad split {split!r}: percentages run from -100% to 100%, not {value}%"
            )
        bounds.append((value, bool(pct)))

    def select(n: int) -> tuple[int, int]:
        from fractions import Fraction

        def absolute(bound):
            if bound is None:
                return None
            value, pct = bound
            # round(Fraction) is exact and rounds ties to even, like TFDS's round(pct * n / 100).
            return round(Fraction(value * n, 100)) if pct else value

        start, stop, _ = slice(absolute(bounds[0]), absolute(bounds[1])).indices(n)
        return start, max(start, stop)

    return name, select

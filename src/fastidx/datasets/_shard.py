"""Shards for data-parallel training: which rows of a split one rank of ``count`` ranks gets.

Two rules, both exact (every row of the split in exactly one shard, no padding, shard sizes
differing by at most one row):

- **In order** (``load``, ``iter_batches(shuffle=False)``): rank ``index`` gets the contiguous block
  of rows ``[start + index * n // count, start + (index + 1) * n // count)``, so a rank decodes
  only the cache frames that hold its rows (Hugging Face's ``split_dataset_by_node`` does the same
  for map-style datasets).
- **Shuffled** (``iter_batches(shuffle=True)``): every rank draws the same permutation,
  ``numpy.random.default_rng(seed + epoch).permutation(n)``, and takes its stride
  ``perm[index::count]`` — the rule of ``torch.utils.data.DistributedSampler`` without its padding.
  Ranks must agree on ``seed``, so a sharded shuffle without one is refused.
"""

from __future__ import annotations

import numbers

import numpy as np


def check(shard, dataset: str = "dataset"):
    """``(index, count)`` as two ints, or ``None``; anything else is a ``ValueError``.

    >>> check((1, 4))
    (1, 4)
    >>> check((4, 4))
    Traceback (most recent call last):
    ...
    ValueError: dataset: bad shard (4, 4): expected (index, count) with 0 <= index < count
    """
    if shard is None:
        return None
    try:
        index, count = shard
    except (TypeError, ValueError):
        raise ValueError(
            f"{dataset}: bad shard {shard!r}: expected a pair (index, count), e.g. (rank, world_size)"
        ) from None
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in (index, count)) \
            or not 0 <= index < count:
        raise ValueError(
            f"{dataset}: bad shard {shard!r}: expected (index, count) with 0 <= index < count"
        )
    return int(index), int(count)


def block(start: int, stop: int, shard) -> tuple[int, int]:
    """Rank ``index``'s contiguous rows of ``[start, stop)``.

    >>> [block(0, 10, (i, 3)) for i in range(3)]
    [(0, 3), (3, 6), (6, 10)]
    """
    if shard is None:
        return start, stop
    index, count = shard
    n = stop - start
    return start + index * n // count, start + (index + 1) * n // count


def narrow(select, shard):
    """``select`` (``n -> (start, stop)``, see ``parse_split``) restricted to the shard's block."""
    if shard is None:
        return select

    def narrowed(n: int) -> tuple[int, int]:
        return block(*select(n), shard)

    return narrowed


def seed_of(seed, epoch, shard, dataset: str = "dataset"):
    """The seed of one epoch's permutation: ``seed + epoch`` (``seed`` when ``epoch`` is None)."""
    if epoch is not None:
        if not isinstance(epoch, numbers.Integral) or isinstance(epoch, bool) or epoch < 0:
            raise ValueError(f"{dataset}: epoch must be a non-negative integer, not {epoch!r}")
        if seed is None:
            raise ValueError(
                f"{dataset}: epoch={epoch} needs a seed: the permutation of an epoch is seeded by "
                f"seed + epoch"
            )
        return int(seed) + int(epoch)
    if shard is not None and seed is None:
        raise ValueError(
            f"{dataset}: shuffle=True with shard={shard!r} needs a seed shared by every rank "
            f"(e.g. seed=0), or the ranks' permutations would overlap"
        )
    return seed


def permuter(seed, shard):
    """``n -> row offsets`` this rank visits in a shuffled pass over ``n`` rows.

    >>> p = permuter(0, (1, 3))
    >>> bool(np.array_equal(p(10), np.random.default_rng(0).permutation(10)[1::3]))
    True
    """

    def permute(n: int) -> np.ndarray:
        order = np.random.default_rng(seed).permutation(n)
        if shard is not None:
            order = order[shard[0] :: shard[1]]
        return order

    return permute

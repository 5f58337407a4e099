"""The arrays a decode writes into: 64-byte-aligned allocation, a caller's ``out=`` checked, and
the prefaulting thread that maps an output's pages on a second CPU while the decoder fills them."""

from __future__ import annotations

import math
import threading

import numpy as np

from .. import _kernels

# Output arrays start on a 64-byte boundary (a cache line, the widest SIMD register).
_ALIGN = 64
_PREFAULT_MIN = 8 << 20  # below this, a thread costs more than the faults it saves
_PREFAULT_STEP = 2 << 20  # pages faulted in per system call
_PREFAULT_AHEAD = 8 << 20  # at most this much beyond what the decoder has written


def aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on a 64-byte boundary."""
    nbytes = math.prod(shape) * dtype.itemsize
    raw = np.empty(nbytes + _ALIGN, np.uint8)
    start = -raw.ctypes.data % _ALIGN
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def check_out(out, shape, dtype, name) -> None:
    """Refuse an ``out=`` array the data cannot be decoded into, naming the source."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a NumPy array, not {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"{name}: out has shape {out.shape}, the data needs {shape}")
    if out.dtype != dtype:
        raise ValueError(f"{name}: out has dtype {out.dtype}, the data needs {dtype}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name}: out must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError(f"{name}: out is read-only")


def cpu_budget() -> int:
    """CPUs this process may use: affinity, ``OMP_NUM_THREADS``, cgroup quota and, in a Ray worker,
    its assigned CPUs (one rule for every thread fastidx starts: see ``_cpus``)."""
    from .._cpus import budget

    return budget()


class Prefaulter:
    """Faults an output's pages in from a second thread while the decoder writes into them.

    In a fresh process every 4 KiB of new output costs a page fault on first write, as much time
    as decoding a float32 MNIST; the kernel can map them on the other core meanwhile. The thread
    never runs more than ``_PREFAULT_AHEAD`` bytes beyond what the decoder has written, so a header
    that lies about its size commits no more memory than the data that really arrives.
    """

    def __init__(self, array: np.ndarray, enabled: bool = True):
        self._bytes = array.reshape(-1).view(np.uint8)
        self._written = 0
        self._stopped = False
        self._cond = threading.Condition()
        self._thread = None
        if enabled and self._bytes.shape[0] >= _PREFAULT_MIN:
            self._thread = threading.Thread(target=self._run, name="fastidx-prefault", daemon=True)
            self._thread.start()

    def advance(self, written: int) -> None:
        """The decoder has written the first ``written`` bytes."""
        if self._thread is not None:
            with self._cond:
                self._written = written
                self._cond.notify()

    def _run(self) -> None:
        total, pos = self._bytes.shape[0], 0
        while pos < total:
            end = min(pos + _PREFAULT_STEP, total)
            with self._cond:
                while not self._stopped and end > self._written + _PREFAULT_AHEAD:
                    self._cond.wait()
                if self._stopped:
                    return
            if not _kernels.prefault(self._bytes[pos:end]):
                return  # the kernel cannot: the decoder's own faults will do
            pos = end

    def close(self) -> None:
        if self._thread is not None:
            with self._cond:
                self._stopped = True
                self._cond.notify()
            self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

"""The process's memory: its high-water mark, and handing what it freed back to the system.

glibc's malloc keeps freed memory for reuse. Training allocates and frees gigabytes of activations
of ever-changing shapes each step (batches differ in length), and the freed pieces fragment its
heap: resident memory then grows step after step far past what is alive (docs/training.md#memory).
Trimming after each step returns the free pages; the next step's allocations take fresh pages
again, which costs about what reusing them did. Within a step the heap still fragments, more as the
run goes on, unless large blocks are kept out of it (`map_large_allocations`)."""
import ctypes
import gc
import resource
import sys
from functools import lru_cache
from typing import Optional


@lru_cache(maxsize=1)
def _glibc() -> Optional[ctypes.CDLL]:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # glibc's own; other C libraries have no such call
        return libc
    except (OSError, AttributeError):
        return None


M_MMAP_THRESHOLD = -3  # mallopt's parameter (malloc.h)
LARGE_ALLOCATION = 2**20


def map_large_allocations(threshold: int = LARGE_ALLOCATION) -> bool:
    """Give every allocation of `threshold` bytes or more pages of its own (mmap), returned to the
    system when it is freed; False where there is no glibc.

    glibc does so from 128 KiB, but each large block freed raises that threshold to the block's
    size (up to 32 MiB), so a training run soon takes its activations from the heap, where the
    freed ones fragment it within a step: a step's peak climbs as the run goes on (the figures are
    in docs/training.md#memory). A fixed threshold stops the climb. It holds for the
    rest of the process: for a process that trains (the `train` and `adapt` commands)."""
    libc = _glibc()
    return libc is not None and libc.mallopt(M_MMAP_THRESHOLD, threshold) == 1


def trim_heap() -> bool:
    """Return malloc's free pages to the system (glibc's malloc_trim); False where there is no glibc."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def release_freed_memory() -> bool:
    """Collect unreachable objects, then trim the heap: what the process holds is then what is alive."""
    gc.collect()
    return trim_heap()


# The highest mark that `step_peak_gb` read before resetting it: the reset lowers the kernel's
# ru_maxrss too, so `peak_resident_gb` keeps it.
_reset_peaks_kib = [0]


def step_peak_gb() -> Optional[float]:
    """The resident high-water mark (the kernel's VmHWM) since the last call, which resets it
    (writing 5 to /proc/self/clear_refs): one training step's peak. None without Linux's /proc."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except (OSError, StopIteration, ValueError):
        return None
    _reset_peaks_kib[0] = max(_reset_peaks_kib[0], kib)
    return round(kib / 2**20, 3)


def peak_resident_gb() -> float:
    """This process's high-water mark of resident memory, loading included (and the marks that
    `step_peak_gb` read before resetting them)."""
    if sys.platform == "darwin":
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**30, 2)  # bytes on macOS
    return round(max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, _reset_peaks_kib[0]) / 2**20, 2)  # KiB on Linux

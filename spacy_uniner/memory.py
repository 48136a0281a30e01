"""The process's memory: its high-water mark, and handing what it freed back to the system.

glibc's malloc keeps freed memory for reuse. Training allocates and frees gigabytes of activations
of ever-changing shapes each step (batches differ in length), and the freed pieces fragment its
heap: resident memory then grows step after step far past what is alive (docs/training.md#memory).
Trimming after each step returns the free pages; the next step's allocations take fresh pages
again, which costs about what reusing them did."""
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


def peak_resident_gb() -> float:
    """This process's high-water mark of resident memory, loading included."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**30 if sys.platform == "darwin" else 2**20), 2)  # KiB on Linux, bytes on macOS

import subprocess
import sys

import psutil
import pytest
import torch

from spacy_uniner.memory import peak_resident_gb, release_freed_memory, step_peak_gb, trim_heap


def test_trimming_returns_the_pages_of_freed_tensors_that_the_heap_kept():
    """Tensors below malloc's mmap threshold live in its heap: free every other one and the freed
    pages stay resident (the heap cannot shrink past the live ones) until trimmed."""
    if not trim_heap():
        pytest.skip("not glibc: no malloc_trim")
    process = psutil.Process()
    tensors = [torch.ones(16_000) for _ in range(16_000)]  # 64 kB each, about 1 GB in all
    del tensors[::2]
    kept = process.memory_info().rss
    assert trim_heap()
    assert kept - process.memory_info().rss > 100 * 2**20  # freeing alone returns none of it
    assert sum(float(t[0]) for t in tensors) == len(tensors)  # the live half is untouched


def test_release_and_peak_report():
    release_freed_memory()
    assert 0.01 < peak_resident_gb() < 1024


def test_a_steps_peak_is_the_high_water_mark_since_the_step_before():
    """Each call reads the kernel's mark and resets it: a large tensor made and freed shows in the
    next reading only. A run-long peak (ru_maxrss) would keep it for every later step."""
    if step_peak_gb() is None:
        pytest.skip("no /proc/self/clear_refs: not Linux")
    step_peak_gb()
    before = step_peak_gb()
    tensor = torch.ones(2**28 // 4 * 3)  # 768 MiB, touched
    del tensor
    release_freed_memory()
    peak = step_peak_gb()
    assert peak - before > 0.6
    assert step_peak_gb() - before < 0.3
    assert peak_resident_gb() >= round(peak, 2)  # the run's peak outlives the reset


FREED_LARGE_TENSORS = """
import sys, psutil, torch
from spacy_uniner.memory import map_large_allocations
if sys.argv[1] == "fixed":
    assert map_large_allocations()
torch.ones(400_000)  # made and freed: glibc's threshold rises past the tensors below
tensors = [torch.ones(400_000) for _ in range(500)]  # 1.6 MB each, 800 MB in all
del tensors[::2]
print(psutil.Process().memory_info().rss)
"""


def resident_after_freeing_large_tensors(threshold: str) -> int:
    run = subprocess.run([sys.executable, "-c", FREED_LARGE_TENSORS, threshold], capture_output=True, text=True, check=True)
    return int(run.stdout.split()[-1])


def test_large_tensors_freed_return_their_pages_under_a_fixed_mmap_threshold():
    """In a process of its own each: the threshold holds for the rest of a process."""
    if not trim_heap():
        pytest.skip("not glibc: no mallopt")
    kept, returned = resident_after_freeing_large_tensors("dynamic"), resident_after_freeing_large_tensors("fixed")
    assert kept - returned > 300 * 2**20

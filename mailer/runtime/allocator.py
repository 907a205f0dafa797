"""glibc's allocator told to give large buffers back, so one large mail does not leave its memory behind.

glibc raises its mmap threshold to the size of any large block freed (up to 32 MB on 64-bit). After
one 30 MB mail, mail-sized buffers then come from the per-thread heaps instead of their own mappings,
and the intake, worker and pool threads each keep a heap that is not returned to the system
(`bench/memory.py --part large`: the daemon's peak rose 7.1× the mail's size, 4.8× with this). A fixed
threshold of 1 MB keeps every buffer of that size in a mapping of its own, freed when it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

THRESHOLD = 1 << 20
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number in glibc's malloc.h


def return_large_buffers() -> None:
    """For this process now and, through the environment, for the processes it starts (the parsing pool)."""
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(THRESHOLD))
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "mallopt"):
            libc.mallopt(_M_MMAP_THRESHOLD, THRESHOLD)
    except OSError:  # another C library: its own rules apply
        pass

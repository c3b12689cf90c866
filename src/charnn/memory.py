"""How much memory a new allocation may take: the machine's available memory, and the
address space an RLIMIT_AS limit (ulimit -v) leaves to this process.

An allocation past an address-space limit fails as MemoryError only when numpy makes it;
the native libraries beneath (OpenBLAS's buffers, LLVM compiling the kernels) print their
own error and end the process instead. Checking before the large allocations turns the
foreseeable cases into a one-line message.
"""

from __future__ import annotations

import os

try:
    import resource
except ImportError:                      # not on Windows
    resource = None


def address_space_left() -> int | None:
    """Bytes of address space the soft RLIMIT_AS leaves to this process (0 when it is
    already used up), or None when there is no limit or it cannot be known."""
    if resource is None:
        return None
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (OSError, ValueError):
        return None
    if soft == resource.RLIM_INFINITY or soft < 0:
        return None
    used = 0
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    used = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    return max(0, soft - used)


def machine_memory_available() -> int:
    """Bytes of memory the machine has available to a new allocation (0 when unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def memory_available() -> int:
    """Bytes a new allocation may take: the machine's available memory, less where an
    address-space limit leaves less (0 when neither is known)."""
    machine, left = machine_memory_available(), address_space_left()
    if left is None:
        return machine
    return min(machine, left) if machine else left


def describe(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.0f} MiB"


def limit_note() -> str:
    """What to raise, when an address-space limit is what leaves too little."""
    return " (raise the address-space limit: ulimit -v)" if address_space_left() is not None \
        else ""

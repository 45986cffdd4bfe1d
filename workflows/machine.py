"""Facts about the machine a step runs on that change what it can do: free memory (inside a
container's cgroup limit too)."""

from __future__ import annotations

from pathlib import Path

# cgroup v2, then v1: (limit file, usage file). A container's limit is invisible to
# psutil.virtual_memory(), which reports the host's memory.
_CGROUP_FILES = (
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
)


def available_memory() -> int:
    """Bytes this process could still allocate: the host's available memory, or what is left
    under the cgroup's memory limit when that is smaller."""
    import psutil

    free = psutil.virtual_memory().available
    for limit_file, usage_file in _CGROUP_FILES:
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit():  # "max" (v2) or a huge number (v1): no limit
            free = min(free, max(int(limit) - usage, 0))
        break
    return free

"""Free memory as a loader may use it: a container's cgroup limit counts, not only the host's."""

from __future__ import annotations

import pytest

from workflows import machine


def test_cgroup_limit_caps_the_host_memory(tmp_path, monkeypatch):
    limit, usage = tmp_path / "memory.max", tmp_path / "memory.current"
    limit.write_text("1000000\n")
    usage.write_text("400000\n")
    monkeypatch.setattr(machine, "_CGROUP_FILES", ((str(limit), str(usage)),))
    assert machine.available_memory() == 600_000
    limit.write_text("max\n")  # cgroup v2 without a limit: the host's figure
    host = machine.available_memory()
    assert host > 600_000
    monkeypatch.setattr(machine, "_CGROUP_FILES", ((str(tmp_path / "absent"), str(usage)),))
    assert abs(machine.available_memory() - host) < 2**30  # no cgroup files: the host's


def test_the_fast_linux_reader_agrees_with_py_cpuinfo(monkeypatch):
    from workflows import machine

    if machine._linux_x86_cpu() is None:
        pytest.skip("the /proc/cpuinfo reader is for x86 Linux")
    machine.cpu_features.cache_clear()
    fast = machine.cpu_features()
    monkeypatch.setattr(machine, "_linux_x86_cpu", lambda: None)
    machine.cpu_features.cache_clear()
    try:
        assert machine.cpu_features() == fast
    finally:
        machine.cpu_features.cache_clear()

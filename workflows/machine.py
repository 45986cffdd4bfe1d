"""Facts about the machine a step runs on that change what it can do or what it measures: free
memory (inside a container's cgroup limit too), and the CPU's INT8 instructions, which decide
INT8 speed and even INT8 results (so every INT8 figure is reported with the machine it came from).
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path
from typing import Any

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


def _linux_x86_cpu() -> dict[str, Any] | None:
    """Brand and flags from /proc/cpuinfo on x86 Linux (1 ms; py-cpuinfo takes 1.1 s, in every
    step process that reports its machine). None elsewhere: py-cpuinfo knows the rest."""
    import platform

    if not sys.platform.startswith("linux") or platform.machine() not in ("x86_64", "AMD64"):
        return None
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break  # the first processor is enough
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    if "flags" not in fields:
        return None
    return {
        "brand_raw": fields.get("model name", "unknown"),
        "arch": "X86_64",
        "flags": fields["flags"].split(),
    }


@cache
def cpu_features() -> dict[str, Any]:
    """The CPU's name and the instruction sets that decide INT8 speed."""
    info = _linux_x86_cpu()
    if info is None:
        import cpuinfo

        info = cpuinfo.get_cpu_info()
    flags = set(info.get("flags", []))
    return {
        "brand": info.get("brand_raw", "unknown"),
        "arch": info.get("arch", "unknown"),
        "avx2": "avx2" in flags,
        "avx512": "avx512f" in flags,
        "avx512_vnni": bool({"avx512_vnni", "avx512vnni"} & flags),
        "avx_vnni": bool({"avx_vnni", "avxvnni"} & flags),
        "amx_int8": "amx_int8" in flags,
        "arm_dotprod": bool({"asimddp", "dotprod"} & flags),
        "arm_i8mm": "i8mm" in flags,
    }


def measured_on() -> dict[str, Any]:
    """The machine an INT8 figure comes from: CPU, INT8 instruction sets, ONNX Runtime."""
    import onnxruntime

    cpu = dict(cpu_features())
    names = {"avx2": "AVX2", "avx512": "AVX-512", "avx512_vnni": "AVX-512 VNNI",
             "avx_vnni": "AVX-VNNI", "amx_int8": "AMX-INT8", "arm_dotprod": "Arm dot-product",
             "arm_i8mm": "Arm i8mm"}  # fmt: skip
    isa = [label for key, label in names.items() if cpu.get(key)]
    dot_product = any(cpu.get(k) for k in ("avx512_vnni", "avx_vnni", "amx_int8", "arm_dotprod"))
    x86 = "X86" in str(cpu.get("arch", "")).upper()
    return {
        **cpu,
        "int8_instructions": isa,
        "int8_dot_product": dot_product,
        "onnxruntime": onnxruntime.__version__,
        "label": f"{cpu['brand']} ({', '.join(isa) or 'no SIMD INT8 extensions'}"
        f"{'' if dot_product else '; no VNNI-class INT8 dot product'}), "
        f"ONNX Runtime {onnxruntime.__version__}",
        # ORT's u8s8 kernels on x86 without VNNI multiply with VPMADDUBSW, whose 16-bit
        # intermediate sums can saturate (ORT's quantization guide); VNNI has no such step.
        "u8s8_saturation_risk": x86 and not dot_product,
    }


def peak_rss() -> int:
    """This process's peak resident memory, bytes. On Linux from VmHWM, which starts afresh in
    each program: getrusage's ru_maxrss survives fork and exec, so a child of a 5 GB process
    reports 5 GB however little it used."""
    import resource

    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS: bytes; elsewhere KiB

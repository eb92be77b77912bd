"""What the machine has: physical cores, CPU int8 features, library versions."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
from pathlib import Path

_CPU_ROOT = Path("/sys/devices/system/cpu")


def usable_cpus() -> list[int]:
    """The logical CPUs this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


@functools.cache
def physical_cores() -> int:
    """Physical cores among the usable CPUs (hyper-threads counted once), at least 1."""
    cores: set[tuple[str, str]] = set()
    for cpu in usable_cpus():
        topology = _CPU_ROOT / f"cpu{cpu}" / "topology"
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return max(1, len(usable_cpus()))
        cores.add((package, core))
    return max(1, len(cores))


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags from ``/proc/cpuinfo`` (empty where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


SIMD_FLAGS = frozenset(
    {
        "sse4_1",
        "sse4_2",
        "avx",
        "avx2",
        "fma",
        "f16c",
        "avx512f",
        "avx512bw",
        "avx512vl",
        "avx512_vnni",
        "avx_vnni",
        "avx512_bf16",
        "avx512_fp16",
        "amx_tile",
        "amx_int8",
        "amx_bf16",
        "asimd",
        "asimddp",
        "sve",
        "sve2",
        "i8mm",
        "bf16",
    }
)
"""Instruction-set extensions that decide which kernels ONNX Runtime and torch pick."""


def simd_flags() -> tuple[str, ...]:
    """The CPU's vector instruction-set extensions (of :data:`SIMD_FLAGS`), sorted."""
    return tuple(sorted(cpu_flags() & SIMD_FLAGS))


def int8_preset() -> str:
    """The CPU's best int8 matrix-multiply feature, the way quantized files are named."""
    flags = cpu_flags()
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    if "avx_vnni" in flags:
        return "avx_vnni"
    if "avx512bw" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    return "generic"


def has_int8_dot_product() -> bool:
    """True with VNNI, whose int8 dot products do not saturate (so no reduce_range)."""
    return int8_preset() in {"avx512_vnni", "avx_vnni"}


def cuda_available() -> bool:
    """True when torch sees a CUDA GPU."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def describe_machine() -> dict[str, object]:
    """Hardware and library versions, for benchmark and export records."""
    versions: dict[str, str] = {}
    for package in ("torch", "transformers", "onnxruntime", "onnx", "sentence-transformers"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
        "cpu": platform.processor() or platform.machine(),
        "logical_cpus": len(usable_cpus()),
        "physical_cores": physical_cores(),
        "int8_preset": int8_preset(),
        "cuda": cuda_available(),
        "python": platform.python_version(),
        "versions": versions,
    }

"""`host()`: an xPU target of the machine perfmodel runs on, read from the machine.

What is read (Linux): the CPU model, logical cores (``os.cpu_count``), SIMD extensions
(``/proc/cpuinfo`` flags: avx512f, avx2, fma, asimd), the clock (``cpu MHz`` of
``/proc/cpuinfo``; the cpufreq maximum where the kernel exposes it), the last-level cache
size (``/sys/devices/system/cpu/cpu0/cache``), memory (``MemTotal`` of ``/proc/meminfo``)
and, when ``bandwidth`` is not given, the memory bandwidth by a streaming measurement
(`perfmodel.fit._measure.measure_stream_bandwidth`: a sum over an array 8x the
last-level cache).

What is assumed (each marked so in the spec's ``[sources]``): two FMA pipes per core
(``FMA_PIPES``), the last-level cache bandwidth (``L3_OVER_DRAM`` x DRAM), energies (no
power meter is read), the efficiency starting points (`perfmodel calibrate` fits them:
`perfmodel measure` writes the data).

    peak_fp32 = cores x f_clk x FMA_PIPES x lanes_fp32 x 2      (FLOP/s)
"""

from __future__ import annotations

import datetime
import os
import pathlib
import platform

#: FMA pipes per core (assumed: Intel since Haswell and AMD since Zen 2 issue two
#: 256-bit FMAs per cycle; Arm Neoverse N1 two 128-bit).
FMA_PIPES = 2
#: fp32 lanes per FMA by the widest SIMD extension present.
SIMD_LANES = (("avx512f", 16), ("avx2", 8), ("avx", 8), ("asimd", 4), ("sse2", 4))
#: Last-level cache bandwidth over DRAM bandwidth (assumed; only matters for rows that
#: re-read operands, which the efficiency fit absorbs).
L3_OVER_DRAM = 4.0
#: Memory bandwidth used when it is neither given nor measurable, B/s (assumed: one
#: DDR4-3200 channel per two cores).
FALLBACK_BANDWIDTH = 12.8e9


def _cpuinfo() -> dict:
    info = {}
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key and key not in info:
                info[key] = value.strip()
    except OSError:
        pass
    return info


def _llc_bytes() -> tuple[float, str]:
    best = 0.0
    root = pathlib.Path("/sys/devices/system/cpu/cpu0/cache")
    for idx in sorted(root.glob("index*")):
        try:
            size = (idx / "size").read_text().strip()
        except OSError:
            continue
        scale = {"K": 1024.0, "M": 1024.0 ** 2, "G": 1024.0 ** 3}.get(size[-1:], 1.0)
        value = float(size.rstrip("KMG")) * scale
        best = max(best, value)
    if best:
        return best, f"read: {root}/index*/size (largest level)"
    return 8.0 * 1024 ** 2, "assumed: 8 MiB (no sysfs cache information)"


def _clock_hz(info: dict) -> tuple[float, str]:
    path = pathlib.Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    try:
        return float(path.read_text()) * 1e3, f"read: {path}"
    except (OSError, ValueError):
        pass
    mhz = info.get("cpu MHz")
    if mhz:
        return float(mhz) * 1e6, "read: 'cpu MHz' of /proc/cpuinfo (the current clock)"
    return 2.5e9, "assumed: 2.5 GHz (no clock information)"


def _memory_bytes() -> tuple[float, str]:
    try:
        for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return float(line.split()[1]) * 1024.0, "read: MemTotal of /proc/meminfo"
    except OSError:
        pass
    return 16.0 * 1024 ** 3, "assumed: 16 GiB"


def host_spec(*, bandwidth: float | None = None) -> dict:
    """The host's spec (a dict in the spec-file schema, with ``[sources]`` saying what
    was read and what was assumed). ``bandwidth``: memory bandwidth in B/s (default:
    measured by streaming)."""
    info = _cpuinfo()
    flags = set(info.get("flags", info.get("Features", "")).split())
    lanes, ext = next(((n, f) for f, n in SIMD_LANES if f in flags), (4, "none found"))
    cores = os.cpu_count() or 1
    clock, clock_src = _clock_hz(info)
    llc, llc_src = _llc_bytes()
    mem, mem_src = _memory_bytes()
    if bandwidth is None:
        try:
            from perfmodel.fit._measure import measure_stream_bandwidth

            bandwidth = measure_stream_bandwidth(llc)
            bw_src = ("measured: perfmodel.fit._measure.measure_stream_bandwidth (a sum over "
                      f"an array 8x the last-level cache) on {datetime.date.today()}")
        except Exception as e:  # noqa: BLE001 - any failure: the documented fallback
            bandwidth, bw_src = FALLBACK_BANDWIDTH, f"assumed: stream measurement failed ({e})"
    else:
        bw_src = "given (host(bandwidth=...))"
    model = info.get("model name") or platform.processor() or platform.machine()
    peak = cores * clock * FMA_PIPES * lanes * 2.0
    today = datetime.date.today().isoformat()
    return {
        "schema_version": 1, "name": "host", "family": "xpu",
        "title": f"{model} ({cores} logical cores, {ext}), this machine",
        "bibtex": ("@misc{perfmodelhost,\n  title = {{The host CPU, read by "
                   f"perfmodel.hardware.host() on {today}}},\n  note = {{{model}}}\n}}"),
        "peak": {"fp32": peak / 1e12},
        "compute": {"units": float(cores), "tile_m": 8.0, "tile_n": 8.0, "mma_rows": 1.0,
                    "energy_pJ_per_flop": 20.0},
        "memory": {
            "dram": {"bandwidth_GB_s": bandwidth / 1e9, "capacity_GB": mem / 1e9,
                     "energy_pJ_per_bit": 20.0},
            "l2": {"bandwidth_GB_s": L3_OVER_DRAM * bandwidth / 1e9,
                   "capacity_MB": llc / 1e6, "energy_pJ_per_bit": 0.5}},
        "power": {"static_W": 5.0 * cores, "tdp_W": 15.0 * cores},
        "efficiency": {"compute": 0.5, "dram": 0.9, "l2": 0.8, "k_half": 32.0,
                       "launch_overhead_us": 10.0, "dram_latency_us": 1.0},
        "sources": {
            "peak.fp32": (f"read: {cores} cores ({clock_src}, {clock / 1e9:.3g} GHz), "
                          f"{ext} = {lanes} fp32 lanes from /proc/cpuinfo flags; assumed: "
                          f"{FMA_PIPES} FMA pipes per core (FMA_PIPES)"),
            "compute.units": "read: os.cpu_count() (logical cores)",
            "compute.tile_m": "assumed: 8-row register block of a CPU GEMM micro-kernel",
            "compute.tile_n": "assumed: 8-column register block of a CPU GEMM micro-kernel",
            "compute.mma_rows": "assumed: SIMD FMAs take one row at a time (no matrix-tile padding)",
            "compute.energy_pJ_per_flop": "assumed: no power meter is read",
            "memory.dram.bandwidth_GB_s": bw_src,
            "memory.dram.capacity_GB": mem_src,
            "memory.dram.energy_pJ_per_bit": "assumed: DDR4 access, no power meter is read",
            "memory.l2.bandwidth_GB_s": f"assumed: {L3_OVER_DRAM:g} x DRAM (L3_OVER_DRAM)",
            "memory.l2.capacity_MB": llc_src,
            "memory.l2.energy_pJ_per_bit": "assumed",
            "power.static_W": "assumed: 5 W per core",
            "power.tdp_W": "assumed: 15 W per core",
            "efficiency.compute": "assumed starting point; perfmodel calibrate fits it",
            "efficiency.dram": "assumed: the stream measurement is near the achievable rate",
            "efficiency.l2": "assumed",
            "efficiency.k_half": "assumed starting point",
            "efficiency.launch_overhead_us": ("assumed starting point (an XLA CPU op "
                                              "dispatch); perfmodel calibrate fits it"),
            "efficiency.dram_latency_us": "assumed",
        },
    }


def host(*, bandwidth: float | None = None):
    """An `XPU` target of this machine (module docstring: what is read, what is
    assumed). ``bandwidth``: memory bandwidth in B/s; default: measured (about 1 s)."""
    from perfmodel.hardware._registry import from_spec

    return from_spec(host_spec(bandwidth=bandwidth))

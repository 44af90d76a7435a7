"""Plausible ranges of the main physical fields of each hardware family's spec.

A value outside its range is still loaded (an exotic design may be the point), but
`perfmodel._spec.SpecReader` warns with a `perfmodel.PlausibilityWarning` naming the
field, the value and the range: a GPU with ``bandwidth_GB_s = 3.35`` almost surely meant
3.35 TB/s. Ranges are in the units of the key (the suffix the reader expects) and are
deliberately generous: every bundled preset lies inside its range with a margin of at
least 2x on both sides (tests/test_spec_errors.py checks it), and each range spans the
devices the family models, from the smallest to the largest, with room beyond.

Keys are dotted paths as written in the spec (``section.field_unit``); an entry may carry
a display unit for keys without a unit suffix (``peak.*`` are TFLOP/s).
"""

from __future__ import annotations

#: family -> {dotted key: (low, high[, display unit])}
PLAUSIBLE_RANGES: dict[str, dict[str, tuple]] = {
    "xpu": {
        # dense peaks: a few Arm cores ~0.05-0.1 TFLOP/s (fp32/fp16) to NVIDIA B200
        # (2.25 PFLOP/s fp16, 4.5 PFLOP/s fp8 dense) and multi-die packages beyond
        "peak.fp32": (0.01, 5_000.0, "TFLOP/s"),
        "peak.fp16": (0.05, 50_000.0, "TFLOP/s"),
        "peak.fp8": (0.1, 100_000.0, "TFLOP/s"),
        "peak.int8": (0.05, 100_000.0, "TOP/s"),
        "peak.int4": (0.1, 200_000.0, "TOP/s"),
        # one-core microcontroller NPUs to wafer-scale core counts (~1e6)
        "compute.units": (1.0, 1_000_000.0),
        # tensor cores at 4 nm ~0.1 pJ/FLOP to scalar CPU datapaths ~10-50 pJ/FLOP
        "compute.energy_pJ_per_flop": (0.005, 100.0),
        # LPDDR4 edge devices ~10 GB/s to HBM3e 8 TB/s (B200)
        "memory.dram.bandwidth_GB_s": (10.0, 20_000.0),
        # 1 GB edge boards to multi-socket servers with TBs of DDR5
        "memory.dram.capacity_GB": (0.5, 4_000.0),
        # stacked HBM ~1-4 pJ/bit to off-package DDR/GDDR with I/O ~20-60 pJ/bit
        "memory.dram.energy_pJ_per_bit": (0.5, 100.0),
        # on-chip caches: ~100 GB/s on small CPUs to tens of TB/s on GPUs
        "memory.l2.bandwidth_GB_s": (20.0, 500_000.0),
        # 64 KB on edge devices to 256 MB (MI300X Infinity Cache) / 230 MB (Groq SRAM)
        "memory.l2.capacity_MB": (0.0625, 2_000.0),
        # SRAM access ~0.01-1 pJ/bit
        "memory.l2.energy_pJ_per_bit": (0.005, 10.0),
        # microSD ~0.1 GB/s to Grace-Hopper C2C 900 GB/s
        "offload.bandwidth_GB_s": (0.05, 2_000.0),
        "offload.capacity_GB": (1.0, 1_000_000.0),
        # host DRAM over PCIe ~20 pJ/bit to flash reads ~100s of pJ/bit
        "offload.energy_pJ_per_bit": (1.0, 2_000.0),
        # PCIe 3 x4 ~4 GB/s to NVLink 5 1.8 TB/s
        "interconnect.bandwidth_GB_s": (0.1, 10_000.0),
        "interconnect.energy_pJ_per_bit": (0.05, 200.0),
        "interconnect.latency_us": (0.01, 10_000.0),
        # milliwatt-class NPUs to GB200 superchips (2.7 kW)
        "power.static_W": (0.01, 5_000.0),
        "power.tdp_W": (0.1, 20_000.0),
        # CUDA graphs ~1 us per kernel to eager host launches of ~10-100 us
        "efficiency.launch_overhead_us": (0.01, 1_000.0),
        "efficiency.dram_latency_us": (0.01, 1_000.0),
        # harvested share of a die's units: none (consumer parts) to about half (bins of
        # large dies); GPUs ship with 5-17% of their SMs disabled
        "area.spare_fraction": (0.001, 0.6),
    },
    "dram-pim": {
        # per channel: DDR4/LPDDR ~10-25 GB/s, HBM2 pseudo-channel 16-32, HBM3 64,
        # GDDR6X ~90 GB/s
        "organization.channel_bandwidth_GB_s": (1.0, 500.0),
        # one LPDDR device (~0.5 GB) to a multi-stack HBM system (~1 TB)
        "organization.capacity_GB": (0.1, 2_000.0),
        # PIM units run at DRAM core clocks (~100-500 MHz) up to logic-die ~2 GHz
        "pim.clock_MHz": (10.0, 5_000.0),
        # host: a CPU's DDR (~50 GB/s) to a GPU's HBM3e (8 TB/s)
        "host.bandwidth_GB_s": (1.0, 20_000.0),
        "host.throughput_TFLOPS": (0.001, 100_000.0),
        # DRAM energy legs are ~0.1-5 pJ/bit each (cell, bank group, global I/O, TSV,
        # interposer or PCB)
        "energy.cell_activate_pJ_per_bit": (0.001, 50.0),
        "energy.cell_read_pJ_per_bit": (0.001, 50.0),
        "energy.bank_group_pJ_per_bit": (0.001, 50.0),
        "energy.global_io_pJ_per_bit": (0.001, 50.0),
        "energy.tsv_pJ_per_bit": (0.001, 50.0),
        "energy.interposer_pJ_per_bit": (0.001, 100.0),
        "energy.mac_pJ_per_mac": (0.001, 100.0),
        # JEDEC timings: tRCD/tRP ~10-20 ns, tRFC ~100-550 ns, tREFI 1.95-7.8 us,
        # tCCD 1-8 ns
        "timing.trcd_ns": (1.0, 200.0),
        "timing.trp_ns": (1.0, 200.0),
        "timing.trfc_ns": (10.0, 5_000.0),
        "timing.trefi_us": (0.1, 100.0),
        "timing.tccd_ns": (0.1, 50.0),
        "power.static_W": (0.001, 5_000.0),
    },
    "lut": {
        # LUT engines in CPU cores or accelerators: ~100 MHz (FPGA) to ~5 GHz
        "lut.clock_GHz": (0.01, 10.0),
        # microcontroller-class LPDDR ~1-5 GB/s, Raspberry Pi 5 17 GB/s, to HBM
        "memory.dram.bandwidth_GB_s": (1.0, 20_000.0),
        "memory.dram.core_bandwidth_GB_s": (0.5, 20_000.0),
        "memory.dram.capacity_GB": (0.05, 4_000.0),
        "memory.dram.energy_pJ_per_bit": (0.5, 100.0),
        "spill.bandwidth_GB_s": (1.0, 100_000.0),
        # on-chip tables: ~1 KB per lane group to tens of MB of SRAM
        "lut.table_capacity_KB": (0.5, 1_000_000.0),
        "host.flops_gflops": (0.5, 1_000_000.0, "GFLOP/s"),
        # an SRAM lookup or an add: ~0.01 pJ (small integer) to ~10 pJ (wide, off-core)
        "energy.lookup_pJ": (0.0005, 100.0),
        "energy.add_pJ": (0.0005, 100.0),
        "power.static_W": (0.0001, 3_000.0),
    },
    "cim": {
        # SRAM CIM macros run at ~10 MHz (analog, early silicon) to ~2 GHz (digital)
        "macro.clock_MHz": (1.0, 5_000.0),
        "macro.cell_energy_fJ": (0.01, 10_000.0),
        "macro.column_energy_fJ": (0.1, 100_000.0),
        "macro.write_energy_fJ_per_bit": (1.0, 100_000.0),
        "vector.throughput_GOPS": (0.1, 1_000_000.0),
        # LPDDR edge memory ~10 GB/s to HBM
        "memory.dram.bandwidth_GB_s": (1.0, 20_000.0),
        "memory.dram.energy_pJ_per_bit": (0.5, 100.0),
        "power.static_mW": (0.001, 1_000_000.0),
    },
    "bonded-3d": {
        # hybrid bonding 1-10 um pitch, micro-bumps 20-55 um, C4 bumps ~150 um
        "bond.pitch_um": (0.1, 200.0),
        "bond.rate_Gbps": (0.01, 100.0),
        "bond.energy_pJ_per_bit": (0.001, 10.0),
        # bonded DRAM arrays: ~100 GB/s to ~100 TB/s
        "dram.array_bandwidth_GB_s": (10.0, 1_000_000.0),
        "dram.capacity_GB": (0.01, 1_000.0),
        "dram.energy_pJ_per_bit": (0.01, 50.0),
        "offchip.bandwidth_GB_s": (1.0, 20_000.0),
        "offchip.capacity_GB": (0.1, 4_000.0),
        "offchip.energy_pJ_per_bit": (0.5, 100.0),
        "compute.clock_GHz": (0.01, 10.0),
        "compute.energy_pJ_per_mac": (0.001, 100.0),
        "power.static_W": (0.001, 5_000.0),
        # air cooling ~50-100 W/cm^2 to liquid / microfluidic ~1 kW/cm^2
        "power.density_limit_W_per_cm2": (1.0, 5_000.0),
    },
    "optical": {
        # modulators: ~1 GHz (thermal/PCM) to ~100 GHz (thin-film lithium niobate)
        "compute.modulation_rate_GHz": (0.01, 500.0),
        "memory.bandwidth_GB_s": (1.0, 20_000.0),
        "memory.energy_pJ_per_bit": (0.05, 100.0),
        "electronic.throughput_TFLOPS": (0.0001, 100_000.0),
        "weights.capacity_MB": (0.0001, 1_000_000.0),
        "energy.modulator_fJ": (0.1, 100_000.0),
        "energy.receiver_pJ": (0.001, 100.0),
        "power.static_W": (0.001, 5_000.0),
    },
    "system": {
        # links between units: PCIe 3 x1 ~1 GB/s to on-package ~10 TB/s
        "link.bandwidth_GB_s": (0.1, 100_000.0),
        "link.energy_pJ_per_bit": (0.01, 200.0),
        "link.latency_us": (0.001, 10_000.0),
    },
    "eager-framework": {
        # host time per framework op: ~1 us (CUDA graphs) to PyTorch eager 5-50 us and
        # Python-heavy ops of ~1 ms
        "framework.host_op_time_us": (0.5, 10_000.0),
    },
}

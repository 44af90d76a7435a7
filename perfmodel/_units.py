"""Readable unit helpers. Everything inside perfmodel is SI: s, B, FLOP, J, W, m, Hz.

Presets are written in the units datasheets use; these helpers convert once, on load.
Decimal prefixes throughout (1 GB = 1e9 B), as memory bandwidth datasheets use them.
"""

KB = 1e3
MB = 1e6
GB = 1e9
TB = 1e12
KiB = 1024.0
MiB = 1024.0**2
GiB = 1024.0**3


def GB_s(x):
    """Gigabytes per second -> bytes per second."""
    return x * 1e9


def TB_s(x):
    """Terabytes per second -> bytes per second."""
    return x * 1e12


def TFLOPS(x):
    """Tera-operations per second -> FLOP/s (also used for TOP/s of integer datapaths)."""
    return x * 1e12


def GFLOPS(x):
    return x * 1e9


def pJ_per_bit(x):
    """Picojoules per bit -> joules per bit."""
    return x * 1e-12


def pJ(x):
    """Picojoules -> joules."""
    return x * 1e-12


def us(x):
    """Microseconds -> seconds."""
    return x * 1e-6


def ns(x):
    """Nanoseconds -> seconds."""
    return x * 1e-9


def GHz(x):
    return x * 1e9


def MHz(x):
    return x * 1e6


# Suffix of a spec-file key -> factor to SI. Used by the spec loader so that a key's unit
# is part of its name (`bandwidth_GB_s`, `capacity_GB`, `energy_pJ_per_bit`).
UNIT_SUFFIXES = {
    "_GB_s": 1e9,
    "_TB_s": 1e12,
    "_TFLOPS": 1e12,
    "_GB": 1e9,
    "_MB": 1e6,
    "_KB": 1e3,
    "_GiB": 1024.0 ** 3,   # DRAM capacities are binary: an "80 GB" HBM part is 80 GiB
    "_MiB": 1024.0 ** 2,
    "_pJ_per_bit": 1e-12,
    "_pJ_per_flop": 1e-12,
    "_pJ": 1e-12,
    "_us": 1e-6,
    "_ns": 1e-9,
    "_W": 1.0,
    "_GHz": 1e9,
    "_MHz": 1e6,
    "_kHz": 1e3,
    "_B": 1.0,
    "_Gbps": 1e9,          # bits/s (per pin or per bond)
    "_GOPS": 1e9,
    "_TOPS": 1e12,
    "_fJ": 1e-15,
    "_fJ_per_bit": 1e-15,
    "_pJ_per_mac": 1e-12,
    "_fJ_per_mac": 1e-15,
    "_nJ": 1e-9,
    "_mW": 1e-3,
    "_uW": 1e-6,
    "_mW_per_mm2": 1e3,    # W/m^2
    "_W_per_cm2": 1e4,     # W/m^2
    "_ms": 1e-3,
    "_s": 1.0,
    "_mm2": 1e-6,          # m^2
    "_um2": 1e-12,
    "_mm": 1e-3,
    "_um": 1e-6,
    "_nm": 1e-9,
    "_dB": 1.0,            # decibels stay decibels (a log ratio)
    "_dBm": 1.0,           # decibel-milliwatts stay as such; convert with dbm_to_watts
    "_usd": 1.0,
    "_usd_per_mm2": 1e6,   # $/m^2
}


def dbm_to_watts(dbm):
    """Optical/electrical power in dBm to watts: ``1 mW * 10^(dBm / 10)``."""
    return 1e-3 * 10.0 ** (dbm / 10.0)


def db_to_ratio(db):
    """A loss or gain in dB to a linear power ratio ``10^(dB / 10)``."""
    return 10.0 ** (db / 10.0)

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
    "_pJ_per_bit": 1e-12,
    "_pJ_per_flop": 1e-12,
    "_pJ": 1e-12,
    "_us": 1e-6,
    "_ns": 1e-9,
    "_W": 1.0,
    "_GHz": 1e9,
    "_MHz": 1e6,
}

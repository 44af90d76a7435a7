"""Hardware targets and presets (published systems).

One module per target family; presets are spec files in ``presets/``.
"""

from perfmodel.hardware._registry import (from_spec, list_presets, load, preset, price,
                                          spec_sources)
from perfmodel.hardware._system import Placement, System
from perfmodel.hardware._xpu import DATATYPE_BITS, MATMUL_KINDS, XPU, MemoryLevel

__all__ = ["XPU", "MemoryLevel", "System", "Placement", "DATATYPE_BITS", "MATMUL_KINDS",
           "preset", "load", "list_presets", "from_spec", "spec_sources", "price"]

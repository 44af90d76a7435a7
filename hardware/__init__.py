"""Hardware targets and presets (published systems).

One module per target family; presets are spec files in ``presets/``:

- `XPU`: GPUs, CPUs and NPUs (roofline over datapaths and a memory hierarchy);
- `DramPim`: DRAM processing-in-memory (in-bank, bank-group, logic-die);
- `LUT`: SRAM lookup-table GEMV (T-MAC, SAIL, ternary LUT accelerators);
- `CIM`: SRAM compute-in-memory macros (EdgeCIM, VitaLLM);
- `Bonded3D`: hybrid-bonded DRAM-on-logic with expert caching and speculation (ELMoE-3D);
- `OpticalAccelerator`: photonic / optical PIM (OPIMA);
- `System`: heterogeneous systems of the above with per-op `Placement` (NeuPIMs, AttAcc,
  Duplex);
- `EagerFramework`: any target driven op by op from a host framework (PyTorch eager), the
  way many papers measure their GPU baselines.

Area, peak power and cost of every design (docs/cost.md): `physical`, the technology
table `NODES` and `rescale_node`, `MEMORY_KINDS`, `tokens_per_dollar` and
`total_cost_of_ownership`.
"""

from perfmodel._errors import PlausibilityWarning
from perfmodel.hardware._bonded3d import Bonded3D
from perfmodel.hardware._cim import CIM
from perfmodel.hardware._dram_pim import DramPim, DramPimMapping
from perfmodel.hardware._framework import EagerFramework
from perfmodel.hardware._host import host, host_spec
from perfmodel.hardware._lut import LUT, LUTMapping
from perfmodel.hardware._optical import OpticalAccelerator, OpticalMapping
from perfmodel.hardware._registry import (from_spec, list_presets, load, preset, price,
                                          spec_sources)
from perfmodel.hardware._system import Placement, System
from perfmodel.hardware._technology import (MEMORY_KINDS, NODES, physical, rescale_node,
                                            tokens_per_dollar, total_cost_of_ownership)
from perfmodel.hardware._xpu import DATATYPE_BITS, MATMUL_KINDS, XPU, MemoryLevel

__all__ = ["XPU", "MemoryLevel", "DramPim", "DramPimMapping", "LUT", "LUTMapping", "CIM",
           "Bonded3D", "OpticalAccelerator", "OpticalMapping", "System", "Placement",
           "EagerFramework", "host", "host_spec",
           "DATATYPE_BITS", "MATMUL_KINDS", "preset", "load", "list_presets", "from_spec",
           "spec_sources", "price", "PlausibilityWarning", "NODES", "MEMORY_KINDS",
           "physical", "rescale_node", "tokens_per_dollar", "total_cost_of_ownership"]

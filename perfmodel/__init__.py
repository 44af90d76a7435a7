"""perfmodel: differentiable analytical performance models for AI hardware, in JAX.

    import perfmodel as pm
    hw = pm.hardware.preset("a100-80gb")
    wl = pm.workloads.preset("llama-2-7b")
    rep = pm.evaluate(hw, wl.decode(batch=8, context=2048, wbits=4))
    rep.latency, rep.energy, rep.tokens_per_s, rep.breakdown()

Public names are re-exported here; implementation modules are private (``_*.py``).
Subpackages: `perfmodel.hardware` (targets and presets), `perfmodel.workloads`
(LLMs, CNNs), `perfmodel.fit` (calibration data and fitting), `perfmodel.opt`
(design spaces and gradient-based optimization).
"""

from perfmodel import _units as units
from perfmodel._errors import ModelInputError, PlausibilityWarning
from perfmodel._evaluate import check_ops, evaluate, sweep
from perfmodel._ops import OP_KINDS, Ops, concat_ops, make_ops
from perfmodel._report import Cost, Report, report_from_cost, roofline_report
from perfmodel._smooth import (CEIL_RAMP, RIDGE_SHARPNESS, bounded, smooth_ceil, smooth_max,
                               smooth_maximum, smooth_min, smooth_relu, smooth_step,
                               smooth_threshold, soft_choice)
from perfmodel._target import AbstractTarget, AbstractUnit
from perfmodel._serve import KV_CACHE_FRACTION, admitted_batch, serve

__version__ = "0.1.0"

# Subpackages last: they import the core above.
from perfmodel import hardware, workloads  # noqa: E402
from perfmodel import fit, opt  # noqa: E402
from perfmodel._citation import citation  # noqa: E402
from perfmodel._sensitivity import sensitivity  # noqa: E402

__all__ = [
    "evaluate", "serve", "admitted_batch", "KV_CACHE_FRACTION", "sweep", "Ops", "Report", "Cost", "report_from_cost", "AbstractTarget",
    "AbstractUnit", "ModelInputError", "PlausibilityWarning", "make_ops", "concat_ops",
    "check_ops", "roofline_report", "OP_KINDS", "smooth_max", "smooth_maximum",
    "smooth_min", "smooth_relu", "smooth_ceil", "smooth_step", "soft_choice",
    "smooth_threshold", "bounded", "RIDGE_SHARPNESS", "CEIL_RAMP", "units", "citation",
    "hardware", "workloads", "fit", "opt", "sensitivity", "__version__",
]

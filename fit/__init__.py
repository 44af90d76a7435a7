"""Calibration against published numbers (data in fit/data/, with citations).

- `fit_least_squares`: log-ratio least squares over named parameters with Laplace
  uncertainty (generic).
- `fit_a100`: the xPU efficiency model fitted to measured A100 kernels.
- `reproduce`: evaluate the published claims in fit/data/claims.csv.
"""

from perfmodel.fit._fitting import FitResult, Parameter, fit_least_squares
from perfmodel.fit._gpu import (DEVICE_PARAMETERS, HARNESS_PARAMETERS, fit_a100,
                                load_kernels, measurement_ops, predict_kernels)

from perfmodel.fit._calibrate import calibrate, write_presets
from perfmodel.fit._claims import evaluate_claim, load_claims, reproduce

__all__ = ["calibrate", "write_presets", "evaluate_claim", "load_claims", "reproduce",
           "FitResult", "Parameter", "fit_least_squares", "fit_a100", "load_kernels",
           "measurement_ops", "predict_kernels", "DEVICE_PARAMETERS", "HARNESS_PARAMETERS"]

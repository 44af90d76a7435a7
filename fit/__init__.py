"""Calibration against published numbers (data in fit/data/, with citations).

- `fit_least_squares`: log-ratio least squares over named parameters with Laplace
  uncertainty (generic).
- `fit_a100`: the xPU efficiency model fitted to measured A100 kernels.
- `reproduce`: evaluate the published claims in fit/data/claims.csv.
- `calibrate(target, data, free=[...])`: fit named parameters of any target to a
  measurement table (`load_measurements`, fit/data/measurements/) or to published claims
  (`claims_measurements`), with uncertainty, identifiability, cross-validation and a
  saved spec (`Calibration.save`); docs/calibration.md. With no arguments: the A100 fit
  (`calibrate_a100`).
"""

from perfmodel.fit._fitting import FitResult, Parameter, fit_least_squares
from perfmodel.fit._gpu import (DEVICE_PARAMETERS, HARNESS_PARAMETERS, fit_a100,
                                load_kernels, measurement_ops, predict_kernels)

from perfmodel.fit._calibrate import calibrate, calibrate_a100, write_presets
from perfmodel.fit._calibration import (Calibration, FittedParameter, Prediction,
                                        calibrate_target, parity_plot)
from perfmodel.fit._measurements import (METRICS, Measurements, MeasurementError,
                                         claims_measurements, load_measurements,
                                         parse_measurements)
from perfmodel.fit._claims import evaluate_claim, load_claims, reproduce
from perfmodel.fit._validate import load_serving, validate

__all__ = ["validate", "load_serving", "calibrate", "calibrate_a100", "calibrate_target", "Calibration",
           "FittedParameter", "Prediction", "parity_plot", "METRICS", "Measurements",
           "MeasurementError", "load_measurements", "parse_measurements",
           "claims_measurements", "write_presets", "evaluate_claim", "load_claims", "reproduce",
           "FitResult", "Parameter", "fit_least_squares", "fit_a100", "load_kernels",
           "measurement_ops", "predict_kernels", "DEVICE_PARAMETERS", "HARNESS_PARAMETERS"]

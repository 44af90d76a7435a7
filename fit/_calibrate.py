"""`calibrate`: the general calibrator (`perfmodel.fit._calibration`), and with no
arguments today's A100 kernel fit (`calibrate_a100`, the `perfmodel calibrate` command
without options)."""

from __future__ import annotations

import numpy as np

from perfmodel.fit._gpu import fit_a100

#: Preset keys (TOML path under [efficiency] / [interconnect]) -> fitted parameter name.
PRESET_FIELDS = {
    ("efficiency", "compute"): "compute_efficiency",
    ("efficiency", "dram"): "dram_efficiency",
    ("efficiency", "l2"): "l2_efficiency",
    ("efficiency", "k_half"): "k_half",
    ("efficiency", "dram_latency_us"): "dram_latency",
    ("interconnect", "efficiency"): "link_efficiency",
    ("interconnect", "latency_us"): "link_latency",
}


def calibrate(target=None, data=None, free=None, **options):
    """Fit named free parameters of any target to measurements; a `Calibration`.

    ``calibrate(target, data, free=[names], *, bounds=..., priors=..., solver=...,
    folds=..., noise=...)``: see `perfmodel.fit._calibration.calibrate_target` and
    docs/calibration.md. Called with no arguments it is `calibrate_a100()`: the xPU
    efficiency model (device and PyTorch-harness parameters) fitted to the 44 measured
    A100 kernels, as a JSON-ready summary dict (the `perfmodel calibrate` command)."""
    if target is None and data is None and free is None and not options:
        return calibrate_a100()
    from perfmodel.fit._calibration import calibrate_target

    missing = [k for k, v in (("target", target), ("data", data), ("free", free))
               if v is None]
    if missing:
        from perfmodel._errors import ModelInputError

        raise ModelInputError(f"calibrate needs target, data and free together; missing: "
                              f"{', '.join(missing)} (with no arguments at all it runs the "
                              "A100 kernel fit).")
    return calibrate_target(target, data, free, **options)


def calibrate_a100() -> dict:
    """Fit the xPU efficiency model to the A100 kernels; a JSON-ready summary."""
    result, sets = fit_a100()
    sets = np.asarray(sets)
    return {
        "data": "fit/data/a100_kernels.csv (LLMCompass artifact, A100 80GB)",
        "parameters": {k: {"value": v, "rel_stderr": result.rel_stderr[k]}
                       for k, v in result.values.items()},
        "mape_percent": {"all": result.mape, "gemm": result.mape_of(sets == "gemm"),
                         "layer": result.mape_of(sets == "layer")},
        "rows": result.table(),
    }


def _set_value(text: str, section: str, key: str, value: str, source: str) -> str:
    """Replace ``key = ...`` inside ``[section]`` and its [sources] entry."""
    import re

    a = text.index(f"[{section}]")
    b = text.index("\n[", a + 1)
    block = re.sub(rf"(?m)^{re.escape(key)} = [^#\n]*", f"{key} = {value}", text[a:b])
    text = text[:a] + block + text[b:]
    return re.sub(rf'(?m)^"{section}\.{re.escape(key)}" = .*$',
                  f'"{section}.{key}" = "{source}"', text)


def write_presets(summary: dict | None = None, preset_dir=None) -> list[str]:
    """Write the fitted values into the GPU presets' spec files (maintainer tool:
    ``perfmodel calibrate --write-presets``). CPUs keep their assumed values."""
    import pathlib

    from perfmodel.hardware._registry import PRESET_DIR, load
    from perfmodel.hardware._xpu import XPU

    summary = summary or calibrate_a100()
    mape = summary["mape_percent"]["all"]
    written = []
    for path in sorted(pathlib.Path(preset_dir or PRESET_DIR).glob("*.toml")):
        target = load(path)
        text = path.read_text()
        if not (isinstance(target, XPU) and target.title.startswith("NVIDIA")
                and "[efficiency]" in text):
            continue  # CPUs (the A100 fit does not apply), variants that extend a preset
        for (section, key), name in PRESET_FIELDS.items():
            v = summary["parameters"][name]["value"] * (1e6 if key.endswith("_us") else 1.0)
            txt = f"{v:.3g}"
            txt = txt if ("." in txt or "e" in txt) else txt + ".0"
            src = (f"fitted: fit/_gpu.py fit_a100 on A100 80GB kernels "
                   f"(fit/data/a100_kernels.csv, MAPE {mape:.1f}%)")
            if not path.stem.startswith("a100"):
                src += "; assumed to transfer to this GPU"
            text = _set_value(text, section, key, txt, src)
        path.write_text(text)
        written.append(path.stem)
    return written

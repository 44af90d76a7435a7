"""`perfmodel calibrate --hardware ... --data ... --free ...`: the general calibrator on the
command line (the command with no options is the A100 kernel fit, `calibrate_a100`)."""

from __future__ import annotations

import csv
import pathlib

from perfmodel._errors import ModelInputError

#: Free parameters fitted when ``--free`` is not given, by target class: efficiencies
#: and the per-op overhead, which every family's measurements touch.
DEFAULT_FREE = {
    "XPU": ["compute_efficiency", "dram.efficiency", "launch_overhead"],
    "LUT": ["lut_efficiency", "dram.efficiency", "dispatch_overhead"],
    "EagerFramework": ["host_op_time"],
}


#: The host target's (`perfmodel.hardware.host`): its clock under a VM, its achievable
#: bandwidth and its per-op dispatch are what the machine does not tell.
HOST_FREE = ["peak_flops.fp32", "dram.bandwidth", "launch_overhead"]


def default_free(target) -> list[str]:
    """The default free parameters of a target (``DEFAULT_FREE``; `HOST_FREE` for the
    host), or an error that lists its parameters."""
    from perfmodel._sensitivity import parameter_names

    if getattr(target, "name", "") == "host":
        return list(HOST_FREE)
    names = DEFAULT_FREE.get(type(target).__name__)
    if names is None:
        raise ModelInputError(
            f"--free is needed for a {type(target).__name__} target (no default); its "
            f"parameters: {', '.join(parameter_names(target))}.")
    return names


def _csv_rows(path: pathlib.Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def resolve_inputs(hardware: str | None, data: str | None):
    """(target reference, data) from the command's options: the data's only hardware when
    ``--hardware`` is missing; the shipped measurement rows that name the hardware when
    ``--data`` is missing."""
    from perfmodel.fit._measurements import (DATA_DIR, load_measurements, shipped_data_for,
                                             shipped_measurements)

    if hardware is None and data is None:
        raise ModelInputError("give --hardware or --data (with neither, perfmodel calibrate "
                              "runs the A100 kernel fit and takes no other options).")
    if data is None:
        files = shipped_data_for(hardware)
        if not files:
            raise ModelInputError(
                f"--data is needed: no shipped measurement file names {hardware!r} "
                f"(shipped: {', '.join(shipped_measurements())}; schema in "
                "docs/calibration.md).")
        return hardware, ("shipped", files)
    if hardware is None and not data.startswith("claims:"):
        path = pathlib.Path(data)
        if not path.is_file() and (DATA_DIR / path.name).is_file():
            path = DATA_DIR / path.name
        if not path.is_file():
            load_measurements(data)  # raises: not found, with the shipped files
        names = sorted({(r.get("hardware") or "").strip() for r in _csv_rows(path)} - {""})
        if len(names) != 1:
            raise ModelInputError(
                "--hardware is needed: the data name "
                + (f"several targets ({', '.join(names)})" if names else "no hardware")
                + "; say which one to calibrate.")
        hardware = names[0]
        if hardware.endswith(".toml"):
            hardware = str((path.parent / hardware).resolve())
    elif hardware is None:
        raise ModelInputError("--hardware is needed with --data claims:...")
    return hardware, data


def shipped_rows(target_ref: str, files: list[str], target):
    """The rows of shipped measurement files that name ``target_ref`` (as hardware or
    baseline), validated, with the files' combined hash."""
    import hashlib

    from perfmodel.fit._measurements import DATA_DIR, parse_measurements

    rows, digest = [], hashlib.sha256()
    for name in files:
        path = DATA_DIR / name
        digest.update(path.read_bytes())
        rows += [r for r in _csv_rows(path)
                 if target_ref in ((r.get("hardware") or "").strip(),
                                   (r.get("baseline") or "").strip())]
    data = parse_measurements(rows, where=", ".join(files), folder=DATA_DIR, target=target,
                              target_key=target_ref)
    data.sha256 = digest.hexdigest()
    data.description = (", ".join(f"fit/data/measurements/{f}" for f in files)
                        + f" (rows on {target_ref})")
    return data


def run_calibrate(*, hardware=None, data=None, free=None, folds=None, out=None,
                  noise=None):
    """Run the general calibrator as the command does; returns the `Calibration` (and
    writes ``out`` when given)."""
    from perfmodel.fit._calibration import _resolve_target, calibrate_target

    ref, data = resolve_inputs(hardware, data)
    target, key, *_ = _resolve_target(ref)
    if isinstance(data, tuple):
        data = shipped_rows(key or ref, data[1], target)
    names = ([n.strip() for n in free.split(",") if n.strip()] if isinstance(free, str)
             else free) or default_free(target)
    if folds is not None and folds < 0:
        raise ModelInputError(f"--folds = {folds} is invalid; it must be >= 0 (0: no "
                              "cross-validation).")
    if noise is not None and not noise > 0:
        raise ModelInputError(f"--noise = {noise} is invalid; it is the measurements' "
                              "relative error, > 0 (e.g. 0.05).")
    result = calibrate_target(ref, data, names, folds=5 if folds is None else folds,
                              noise=noise)
    if out:
        result.save(out)
        result.saved = str(out)
    return result


def report(result) -> str:
    """The command's text output: the summary and the residual table."""
    text = result.summary() + "\n\n" + result.format_table()
    saved = getattr(result, "saved", None)
    if saved:
        text += f"\n\nwrote {saved} (perfmodel predict --hardware {saved} ...)"
    return text

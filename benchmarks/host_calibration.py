"""Held-out error of the host target after calibration (issue 18, part 4).

    python benchmarks/host_calibration.py               # measures first (~2-4 min)
    python benchmarks/host_calibration.py --data m.csv  # a table from `perfmodel measure`

Splits the measurement table: every other GEMM / GEMV shape (in the table's order) is
fitted with the host's default free parameters (`perfmodel.fit._command.HOST_FREE`); the
other shapes and every decode step of the small model are predicted with the fitted
values and never used in the fit. Prints the fitted values, the in-sample error and the
held-out error per group (benchmarks/RESULTS.md records a run).
"""

from __future__ import annotations

import argparse
import csv
import json
import pathlib
import sys
import tempfile


def split(path: pathlib.Path, folder: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    rows = list(csv.DictReader(path.open()))
    kernels = [r for r in rows if r["workload"] == "gemm"]
    fit = kernels[::2]
    held = kernels[1::2] + [r for r in rows if r["workload"] != "gemm"]
    out = []
    for name, part in (("fit.csv", fit), ("held_out.csv", held)):
        p = folder / name
        with p.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(part)
        out.append(p)
    return out[0], out[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="a measurement table from perfmodel measure")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    from perfmodel.fit._calibration import calibrate_target
    from perfmodel.fit._command import HOST_FREE
    from perfmodel.fit._measure import measure

    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        data = pathlib.Path(a.data) if a.data else folder / "measured.csv"
        if not a.data:
            def progress(done, total, label):
                sys.stderr.write(f"\r\033[K[{done}/{total}] {label}")
                sys.stderr.flush()
            summary = measure(data, progress=progress)
            sys.stderr.write("\n")
        fit_csv, held_csv = split(data, folder)
        result = calibrate_target("host", str(fit_csv), HOST_FREE, folds=0)
        held = result.check(str(held_csv))
    groups = {}
    for r in held["rows"]:
        groups.setdefault(r.get("group") or "", []).append(abs(r["rel_error"]))
    out = {"device": summary["device"] if not a.data else str(data),
           "parameters": result.values, "mape_in_sample": result.mape,
           "mape_held_out": held["mape"],
           "mape_held_out_by_group": {g: sum(v) / len(v) for g, v in groups.items()},
           "held_out_rows": [{k: r[k] for k in ("label", "measured", "predicted", "rel_error")
                              if k in r} for r in held["rows"]]}
    if a.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"host calibration on {out['device']}")
    for k, v in out["parameters"].items():
        print(f"  {k:<20}{v:.4g}")
    print(f"  MAPE in-sample {out['mape_in_sample']:.1%} ({len(result.rows)} rows), "
          f"held out {out['mape_held_out']:.1%} ({len(held['rows'])} rows)")
    for g, v in out["mape_held_out_by_group"].items():
        print(f"    held-out {g:<8}{v:.1%}")
    print(result.format_table())
    for r in held["rows"]:
        print(f"  held out: {r.get('label', '')[:60]:<60} {r['measured']:>10.4g} "
              f"{r['predicted']:>10.4g} {r['rel_error']:+.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: evaluations/s with and without gradients for one preset of every target
family (each family module's ``BENCH_CASE``; see perfmodel._bench).

    python benchmarks/bench_targets.py [--designs N] [--json] [--target PRESET ...]

Same as `perfmodel bench --all-targets`. Goal on a 2-core CPU: >= 1e6 evaluations/s with
gradients per target. Results: benchmarks/RESULTS.md.
"""

import sys

from perfmodel._cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if not any(a.startswith("--target") for a in args):
        args.append("--all-targets")
    raise SystemExit(main(["bench", "--no-genz", *args]))

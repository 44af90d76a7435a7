"""Benchmark: Llama-2-7B decode-step evaluations/s on the xPU target (see perfmodel._bench).

    python benchmarks/bench_decode.py [--designs N] [--json]

Same as `perfmodel bench`. Goals on a 2-core CPU (docs/architecture.md): >= 1e7
evaluations/s, >= 2e6 with gradients, jit compile < 5 s.
"""

import sys

from perfmodel._cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", *sys.argv[1:]]))

"""Gradient-based co-design of hardware, mapping and workload (docs/codesign.md).

    import perfmodel as pm
    from perfmodel import opt

    space = opt.Space(pm.hardware.preset("hbm-pim"), {
        "hardware.mac_lanes": opt.Integer(4, 64),
        "hardware.pim_clock": opt.Real(150e6, 1.2e9),
        "workload.wbits": opt.Integer(2, 16)})
    objective = opt.Objective(pm.workloads.preset("llama-2-7b"), "tokens_per_s",
                              mix=opt.mix_grid(batch=[1, 8], context=[1024]))
    result = opt.optimize(space, objective, [opt.Constraint("power", max=60.0)])
    result.values, result.score, result.constraint_report

- `Space` and its dims (`Real`, `Integer`, `PowerOfTwo`, `Choice`): which inputs move;
- `Objective` (a metric over a workload mix), `Constraint` (bounds), `mix_grid`;
- `optimize`: multi-start augmented-Lagrangian descent with optax, annealing, hardening
  and exact re-scoring; `Result`;
- `pareto_front`: a two-metric trade-off from one vmapped sweep of weights;
- `list_spaces`/`load_problem`: the problems shipped per family (``opt/spaces/*.toml``)
  or your own TOML; `optimize_problem`: one run per structural variant (GPU type,
  tensor parallelism: a problem's ``[structure]``); `write_spec`: the best design as a
  hardware spec.
"""

from perfmodel.opt._objective import Constraint, Objective, mix_grid
from perfmodel.opt._optimize import Result, optimize
from perfmodel.opt._pareto import Front, hypervolume, non_dominated, pareto_front
from perfmodel.opt._problems import (Problem, list_spaces, load_problem, optimize_problem,
                                     write_spec)
from perfmodel.opt._space import Choice, Dim, Integer, PowerOfTwo, Real, Space

__all__ = ["Space", "Dim", "Real", "Integer", "PowerOfTwo", "Choice", "Objective",
           "Constraint", "mix_grid", "optimize", "Result", "pareto_front", "Front",
           "hypervolume", "non_dominated", "Problem", "list_spaces", "load_problem",
           "write_spec", "optimize_problem"]

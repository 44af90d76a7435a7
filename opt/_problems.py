"""Co-design problems as TOML files (space, objective, constraints), the named ones
shipped in ``opt/spaces/``, and the optimized design written back as a hardware spec.

A problem file (docs/codesign.md)::

    schema_version = 1
    name = "dram-pim"
    title = "In-bank DRAM-PIM for Llama-2-7B decode over a batch mix"
    hardware = "hbm-pim"               # a preset (or a spec file path)

    [workload]
    name = "llama-2-7b"                # a preset or a config.json path
    phase = "decode"
    mix = {batch = [1, 8, 32], context = [1024]}   # the product of these knobs
    # weights = [...]                  # per mix point, optional

    [objective]
    metric = "tokens_per_s"            # or a table {latency = 1, energy_per_token = 1}

    [[constraints]]
    metric = "area"
    max = 1.2e-4                       # SI (m^2)

    [dims]
    "hardware.mac_lanes" = {type = "integer", low = 4, high = 64}
    "hardware.pim_clock" = {type = "real", low = 1.5e8, high = 1.2e9, scale = "log"}
    "workload.wbits" = {type = "integer", low = 4, high = 16}

    [structure]                        # optional: choices that change the rows
    hardware = ["a100-80gb", "h100-sxm"]   # presets, each a variant of the base
    tensor_parallel = [1, 2, 4]        # fixed keywords of the workload's builder

Structural choices cannot be relaxed (they change the ops table), so
`optimize_problem` runs one optimization per combination (the product of the
``[structure]`` lists) and keeps the best feasible one.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import pathlib

from perfmodel._errors import ModelInputError
from perfmodel._spec import closest_names, load_spec_file
from perfmodel.opt._objective import Constraint, Objective, mix_grid
from perfmodel.opt._space import Space, dim_from_dict

SPACE_DIR = pathlib.Path(__file__).parent / "spaces"
_TOP = {"schema_version", "name", "title", "hardware", "workload", "objective",
        "constraints", "dims", "notes", "sources", "structure"}


@dataclasses.dataclass(frozen=True)
class Problem:
    """A space with its objective and constraints (what a problem file holds)."""

    space: Space
    objective: Objective
    constraints: tuple = ()
    name: str = ""
    title: str = ""
    preset: str = ""   # the starting hardware preset (what a written spec extends)
    #: structural variants (``[structure]``): dicts of ``hardware`` (a preset name) and
    #: ``options`` (builder keywords); empty: the problem as written
    variants: tuple = ()


def list_spaces() -> list[str]:
    """Names of the shipped problems (opt/spaces/*.toml)."""
    return sorted(p.stem for p in SPACE_DIR.glob("*.toml"))


def load_problem(ref) -> Problem:
    """A problem from a shipped name (`list_spaces`) or a TOML file path."""
    from perfmodel import hardware, workloads

    path = pathlib.Path(str(ref))
    if not (str(ref).endswith(".toml") or path.is_file()):
        names = list_spaces()
        if ref not in names:
            hint = closest_names(str(ref), names)
            raise ModelInputError(f"unknown space {ref!r}" + (
                f"; did you mean {', '.join(map(repr, hint))}?" if hint else
                f"; valid: {', '.join(names)}."))
        path = SPACE_DIR / f"{ref}.toml"
    data = load_spec_file(path)
    label = path.name
    unknown = set(data) - _TOP
    if unknown:
        raise ModelInputError(f"{label}: unknown key {sorted(unknown)[0]!r}; valid: "
                              f"{', '.join(sorted(_TOP))}.")
    for key in ("hardware", "workload", "objective", "dims"):
        if key not in data:
            raise ModelInputError(f"{label}: missing {key}.")
    href = str(data["hardware"])
    hw = hardware.load(path.parent / href) if href.endswith(".toml") else \
        hardware.preset(href)
    wl_data = data["workload"]
    wref = str(wl_data.get("name", ""))
    wl = workloads.load(path.parent / wref) if wref.endswith(".json") else \
        workloads.preset(wref)
    mix = wl_data.get("mix", {})
    if not isinstance(mix, dict):
        raise ModelInputError(f"{label}: workload.mix must be a table of knob = [values].")
    points = mix_grid(**{k: v if isinstance(v, list) else [v] for k, v in mix.items()}) \
        if mix else ({},)
    obj = data["objective"]
    objective = Objective(wl, obj.get("metric", "tokens_per_s"),
                          phase=wl_data.get("phase", "decode"), mix=points,
                          weights=tuple(wl_data["weights"]) if "weights" in wl_data else None)
    constraints = tuple(Constraint(c["metric"], max=c.get("max"), min=c.get("min"),
                                   over=c.get("over", "max"),
                                   quant_method=c.get("quant_method", "gptq"),
                                   phase=c.get("phase"),
                                   mix=mix_grid(**{k: v if isinstance(v, list) else [v]
                                                   for k, v in c["mix"].items()})
                                   if "mix" in c else None)
                        for c in data.get("constraints", []))
    dims = {p: dim_from_dict(p, d) for p, d in data["dims"].items()}
    name = data.get("name", path.stem)
    return Problem(space=Space(hw, dims, name=name), objective=objective,
                   constraints=constraints, name=name, title=data.get("title", ""),
                   preset="" if href.endswith(".toml") else href,
                   variants=_variants(data.get("structure"), label, href, wl,
                                      wl_data.get("phase", "decode")))


def _variants(structure, label, href, workload, phase) -> tuple:
    """The product of the ``[structure]`` lists as ``{"hardware", "options", "label"}``."""
    if not structure:
        return ()
    import inspect
    import itertools

    from perfmodel import hardware

    if not isinstance(structure, dict) or not all(
            isinstance(v, list) and v for v in structure.values()):
        raise ModelInputError(f"{label}: [structure] must map names to non-empty lists.")
    hws = [str(h) for h in structure.get("hardware", [href])]
    for h in hws:
        hardware.preset(h)  # an unknown preset: the error names the closest
    params = inspect.signature(getattr(workload, phase)).parameters
    options = {k: v for k, v in structure.items() if k != "hardware"}
    for k in options:
        if k not in params:
            raise ModelInputError(
                f"{label}: structure.{k} is not a keyword of {workload.name}.{phase}; "
                f"valid: hardware, {', '.join(p for p in params if p != 'self')}.")
    keys = sorted(options)
    out = []
    for h, combo in itertools.product(hws, itertools.product(*(options[k] for k in keys))):
        opts = dict(zip(keys, combo))
        tag = ", ".join([h] + [f"{k}={v}" for k, v in opts.items()])
        out.append({"hardware": h, "options": opts, "label": tag})
    return tuple(out)


def optimize_problem(problem: Problem, *, progress=None, **optimize_kwargs):
    """`optimize` a problem over its structural variants (``[structure]``): one run per
    variant (the same starts, steps and seed each), the best feasible result overall
    (the least violating when none is feasible). Returns ``(result, table)``: ``table``
    has one row per variant (``label``, ``best``, ``feasible``, or ``error`` when the
    variant cannot run, e.g. a tensor-parallel degree that does not divide the heads).
    Without variants: ``optimize`` of the problem and a one-row table."""
    from perfmodel import hardware
    from perfmodel.opt._optimize import optimize

    variants = problem.variants or ({"hardware": None, "options": {}, "label": problem.name},)
    best, table = None, []
    for i, v in enumerate(variants):
        try:
            space = problem.space if v["hardware"] is None else Space(
                hardware.preset(v["hardware"]), problem.space.dims, name=problem.space.name)
            objective = dataclasses.replace(problem.objective,
                                            options={**problem.objective.options,
                                                     **v["options"]})
            r = optimize(space, objective, problem.constraints, **optimize_kwargs)
        except ModelInputError as e:
            table.append({"label": v["label"], "error": str(e)})
            continue
        r.variant = v
        table.append({"label": v["label"], "best": r.best, "feasible": r.feasible,
                      "wall_s": r.wall_s})
        if best is None or _better(r, best):
            best = r
        if progress:
            progress(i + 1, len(variants), v["label"])
    if best is None:
        raise ModelInputError(f"{problem.name}: no structural variant could run: "
                              + "; ".join(f"{t['label']}: {t['error']}" for t in table))
    return best, table


def _better(a, b) -> bool:
    """Feasible beats infeasible; then the lower exact loss."""
    if a.feasible != b.feasible:
        return a.feasible
    return a.loss < b.loss


def write_spec(result, path, *, preset: str, name: str | None = None) -> pathlib.Path:
    """Write the optimized design as a hardware spec that ``extends`` its starting
    ``preset`` with the moved parameters in ``[overrides]`` (SI; fractions as fractions);
    `perfmodel predict --hardware FILE` reads it. The header says the space, objective,
    constraints, seed, date and exact score; the workload knobs and mapping that were
    optimized are stated there too (they are `predict` flags, not hardware)."""
    from perfmodel.hardware import list_presets

    if preset not in list_presets():
        raise ModelInputError(f"write_spec needs the starting hardware preset's name; "
                              f"{preset!r} is not one.")
    path = pathlib.Path(path)
    hw_values = {p.split(".", 1)[1]: v for p, v in result.values.items()
                 if p.startswith("hardware.")}
    others = {p: v for p, v in result.values.items() if not p.startswith("hardware.")}
    name = name or f"{preset}-{result.space.name or 'opt'}-seed{result.seed}"
    lines = [
        "# Optimized with perfmodel.opt on "
        + datetime.datetime.now().isoformat(timespec="seconds"),
        f"# space: {result.space.name or '(python)'}: " + "; ".join(result.space.describe()),
        f"# objective: {result.objective.describe()}",
        "# constraints: " + ("; ".join(c["name"] for c in result.constraint_report) or "none"),
        f"# seed {result.seed}, {result.starts} starts x {result.steps} steps; "
        f"feasible: {str(result.feasible).lower()}",
        "# exact score (hard=True, geometric mean over the mix): " + ", ".join(
            f"{k} = {v:.6g}" for k, v in result.score.items()),
    ]
    if others:
        lines.append("# also optimized (not hardware): " + ", ".join(
            f"{k} = {v:g}" for k, v in others.items()))
    lines += ["schema_version = 1", f'extends = "{preset}"', f'name = "{name}"',
              f'title = "{preset} optimized for {result.objective.describe()}"',
              "", "[overrides]"]
    for k, v in hw_values.items():
        if not math.isfinite(v):
            raise ModelInputError(f"write_spec: {k} = {v} is not finite.")
        lines.append(f'"{k}" = {float(v)!r}')
    path.write_text("\n".join(lines) + "\n")
    return path

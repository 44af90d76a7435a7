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
        "constraints", "dims", "notes", "sources"}


@dataclasses.dataclass(frozen=True)
class Problem:
    """A space with its objective and constraints (what a problem file holds)."""

    space: Space
    objective: Objective
    constraints: tuple = ()
    name: str = ""
    title: str = ""
    preset: str = ""   # the starting hardware preset (what a written spec extends)


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
                   preset="" if href.endswith(".toml") else href)


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

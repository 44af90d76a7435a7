"""Co-design (perfmodel.opt): spaces, hardening, exact re-scoring, constraints, closed-form
optima, checkpoint/resume after SIGKILL, sharding over devices, the shipped spaces,
written specs and the CLI.

A small problem keeps it fast: GPT-2 XL decode on the a100-80gb preset.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import perfmodel as pm
from perfmodel import opt
from perfmodel.opt._problems import list_spaces, load_problem, write_spec

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpt2():  # (a100: the session fixture of conftest.py)
    return pm.workloads.preset("gpt2-xl")


# ------------------------------------------------------------------ spaces


def test_space_errors_name_the_field(a100):
    with pytest.raises(pm.ModelInputError, match="'hardware.dram.bandwidth'"):
        opt.Space(a100, {"hardware.dram.bandwith": opt.Real(1e12, 2e12)})
    with pytest.raises(pm.ModelInputError, match="fixed structure"):
        opt.Space(a100, {"hardware.datatypes": opt.Real(1.0, 2.0)})
    with pytest.raises(pm.ModelInputError, match="moves nothing"):
        opt.Space(a100, {})
    with pytest.raises(pm.ModelInputError, match="below high"):
        opt.Real(2e12, 1e12)
    with pytest.raises(pm.ModelInputError, match="start with one of"):
        opt.Space(a100, {"dram.bandwidth": opt.Real(1e12, 2e12)})
    with pytest.raises(pm.ModelInputError, match="'workload.wbits'"):
        opt.Space(a100, {"workload.wbit": opt.Integer(2, 8)})
    with pytest.raises(pm.ModelInputError, match="powers of two"):
        opt.PowerOfTwo(3, 16)


def test_hardening_gives_valid_discrete_values(a100):
    space = opt.Space(a100, {"hardware.units": opt.Integer(54, 216),
                             "hardware.tile_n": opt.PowerOfTwo(32, 256),
                             "hardware.dram.bandwidth": opt.Choice([1e12, 2e12, 3e12]),
                             "workload.wbits": opt.Integer(2, 16, scale="log")})
    u = space.sample(jax.random.PRNGKey(1), 200)
    vals = space.values(u, hard=True)
    assert np.all(np.asarray(vals["hardware.units"]) % 1 == 0)
    assert set(np.log2(np.asarray(vals["hardware.tile_n"])).round(6) % 1) == {0.0}
    assert set(np.asarray(vals["hardware.dram.bandwidth"]).tolist()) == set(
        np.float32([1e12, 2e12, 3e12]).tolist())
    wb = np.asarray(vals["workload.wbits"])
    assert np.all(wb % 1 == 0) and wb.min() >= 2 and wb.max() <= 16
    # hardening is idempotent and keeps the values in bounds
    h = space.harden(u)
    np.testing.assert_allclose(np.asarray(space.harden(h)), np.asarray(h), atol=1e-6)
    # the starting design encodes to its own values
    start = space.values(jnp.asarray(space.encode({}), jnp.float32))
    assert float(start["hardware.units"]) == pytest.approx(108.0)


# ------------------------------------------------------------------ optimize


def _bandwidth_problem(a100, gpt2, power_max):
    space = opt.Space(a100, {"hardware.dram.bandwidth": opt.Real(5e11, 8e12)})
    objective = opt.Objective(gpt2, "tokens_per_s", mix=({"batch": 1.0, "context": 512.0},))
    return space, objective, (opt.Constraint("power", max=power_max),)


def test_constrained_optimum_matches_closed_form(a100, gpt2):
    """Compute-bound prefill gets faster with the fp16 peak while its average power
    rises; under a power cap the optimum is where the cap binds, found here by
    bisection of the exact model. The optimizer lands within 1% of it (in the peak and
    in tokens/s) and reports the cap active; what it reports is the exact re-score."""
    cap = 200.0
    space = opt.Space(a100, {"hardware.peak_flops.fp16": opt.Real(5e13, 8e14)})
    objective = opt.Objective(gpt2, "tokens_per_s", phase="prefill",
                              mix=({"batch": 4.0, "prompt": 512.0},))
    ops = gpt2.prefill(4.0, 512.0)

    @jax.jit
    def exact(peak):
        hw = pm._paths.set_values(a100, {"peak_flops.fp16": peak})
        rep = pm.evaluate(hw, ops, hard=True, check=False)
        return rep.power, rep.tokens_per_s

    def run(peak):
        return tuple(float(x) for x in exact(peak))

    lo, hi = 5e13, 8e14
    assert run(lo)[0] < cap < run(hi)[0]
    for _ in range(60):
        mid = (lo * hi) ** 0.5
        lo, hi = (mid, hi) if run(mid)[0] < cap else (lo, mid)
    r = opt.optimize(space, objective, [opt.Constraint("power", max=cap)], starts=4,
                     steps=100, seed=0, progress=False)
    assert r.feasible
    assert r.values["hardware.peak_flops.fp16"] == pytest.approx(lo, rel=0.01)
    assert r.score["tokens_per_s"] == pytest.approx(run(lo)[1], rel=0.01)
    (c,) = r.constraint_report
    assert c["active"] and c["satisfied"] and c["value"] <= cap * (1 + 1e-6)
    rescored = pm.evaluate(r.hardware, ops, hard=True)
    assert r.score["tokens_per_s"] == pytest.approx(float(rescored.tokens_per_s), rel=1e-5)
    assert r.history["hardened"].shape == (100 // 25 + 1, 4)   # + the starts
    assert r.evaluations > 4 * 100


def test_infeasible_constraint_reports_least_violating(a100, gpt2):
    space, objective, cons = _bandwidth_problem(a100, gpt2, 1.0)   # 1 W: impossible
    r = opt.optimize(space, objective, cons, starts=2, steps=10, progress=False)
    assert not r.feasible
    (c,) = r.constraint_report
    assert not c["satisfied"] and c["value"] > 1.0
    # least violating: the lowest-power design of the box, its lower bandwidth bound
    assert r.values["hardware.dram.bandwidth"] == pytest.approx(5e11, rel=0.02)


def small_run(checkpoint, steps, resume=False):
    """The run the checkpoint and sharding tests repeat (also run in a subprocess): the
    same seed gives the same result in another process, on two devices, and resumed
    after SIGKILL (determinism)."""
    hw, wl = pm.hardware.preset("a100-80gb"), pm.workloads.preset("gpt2-xl")
    space = opt.Space(hw, {"hardware.dram.bandwidth": opt.Real(5e11, 8e12),
                           "hardware.units": opt.Integer(54, 216)})
    objective = opt.Objective(wl, "tokens_per_s", mix=({"batch": 4.0, "context": 512.0},))
    r = opt.optimize(space, objective, [opt.Constraint("power", max=120.0)], starts=4,
                     steps=steps, chunk=5, seed=3, checkpoint=checkpoint, resume=resume,
                     progress=False)
    return repr((r.values, r.loss))


RUN = ("import sys; sys.path.insert(0, {tests!r}); from test_opt import small_run; "
       "print(small_run(sys.argv[1], int(sys.argv[2]), len(sys.argv) > 3))").format(
    tests=str(pathlib.Path(__file__).parent))


def _run(args, env=None):
    return subprocess.run([sys.executable, "-c", RUN, *args], capture_output=True,
                          text=True, env=env, timeout=600)


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path):
    """Killed with SIGKILL after a checkpoint, resumed: the same result as an
    uninterrupted run of the same seed, and no evaluated point lost."""
    whole = small_run(tmp_path / "whole", 40)
    part = tmp_path / "part"
    proc = subprocess.Popen([sys.executable, "-c", RUN, str(part), "40"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    state = part / "state.npz"
    deadline = time.time() + 300
    while not state.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert state.exists(), proc.stderr.read().decode()
    killed_at = json.loads(str(np.load(state)["meta"]))["done"]
    assert killed_at < 40
    assert small_run(part, 40, resume=True) == whole
    a = (tmp_path / "whole" / "points.jsonl").read_text().splitlines()
    b = (part / "points.jsonl").read_text().splitlines()
    assert len(a) == len(b) == 4 * (40 // 5 + 1)
    assert [json.loads(x)["loss"] for x in a] == [json.loads(x)["loss"] for x in b]


def test_two_host_devices_give_the_same_result(tmp_path):
    """Starts sharded over two (forced) host devices: identical to one device."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    two = _run([str(tmp_path / "two"), "10"], env=env)
    assert two.returncode == 0, two.stderr
    assert two.stdout.strip() == small_run(tmp_path / "one", 10)


# ------------------------------------------------------------------ shipped problems


@pytest.mark.parametrize("name", list_spaces())
def test_shipped_space_gradients_finite(name):
    """Every shipped space loads, and the augmented objective's gradient is finite at
    random starts."""
    p = load_problem(name)
    f = opt._objective.problem_fn(p.space, p.objective, p.constraints)
    u = p.space.sample(jax.random.PRNGKey(0), 2)

    def aug(x):
        loss, g, _ = f(x, 0.5, False)
        return loss + jnp.sum(g) + jnp.sum(jnp.maximum(g, 0) ** 2)

    vals, grads = jax.jit(jax.vmap(jax.value_and_grad(aug)))(u)
    assert np.all(np.isfinite(np.asarray(vals))) and np.all(np.isfinite(np.asarray(grads)))
    assert {"xpu", "dram-pim", "lut", "cim", "bonded-3d", "optical", "system"} <= set(
        list_spaces())


SMALL_TOML = """
schema_version = 1
name = "small"
hardware = "a100-80gb"
[workload]
name = "gpt2-xl"
mix = {batch = [1], context = [512]}
[objective]
metric = "tokens_per_s"
[[constraints]]
metric = "power"
max = 120.0
[dims]
"hardware.dram.bandwidth" = {type = "real", low = 5e11, high = 8e12}
"hardware.units" = {type = "integer", low = 54, high = 216}
"workload.wbits" = {type = "integer", low = 4, high = 16}
"""


def test_written_spec_round_trips_through_predict(tmp_path, capsys):
    (tmp_path / "small.toml").write_text(SMALL_TOML)
    p = load_problem(tmp_path / "small.toml")
    r = opt.optimize(p.space, p.objective, p.constraints, starts=2, steps=10,
                     progress=False)
    path = write_spec(r, tmp_path / "best.toml", preset=p.preset)
    text = path.read_text()
    assert 'extends = "a100-80gb"' in text and "seed 0" in text
    assert "workload.wbits = " in text   # knobs are stated, not hardware
    hw = pm.hardware.load(path)
    for k, v in r.values.items():
        if k.startswith("hardware."):
            got = pm._paths.get_values(hw, [k.split(".", 1)[1]])[k.split(".", 1)[1]]
            assert float(got) == pytest.approx(v, rel=1e-6)
    from perfmodel._cli import main

    assert main(["predict", "--hardware", str(path), "--workload", "gpt2-xl",
                 "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["hardware"] == hw.name
    wbits = r.values["workload.wbits"]
    assert main(["predict", "--hardware", str(path), "--workload", "gpt2-xl", "--context",
                 "512", "--wbits", f"{wbits:g}", "--json", "--exact"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["tokens_per_s"] == pytest.approx(r.score["tokens_per_s"], rel=1e-4)


def test_cli_optimize_json(tmp_path, capsys):
    from perfmodel._cli import main

    (tmp_path / "small.toml").write_text(SMALL_TOML)
    out = tmp_path / "run"
    assert main(["optimize", "--space", str(tmp_path / "small.toml"), "--starts", "2",
                 "--steps", "10", "--out", str(out), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert {"best", "score", "constraints", "out"} <= set(d)
    assert d["out"] == str(out / "best.toml") and (out / "points.jsonl").exists()
    assert main(["optimize", "--space", "dram-pm"]) == 2
    assert "did you mean 'dram-pim'" in capsys.readouterr().err


def test_baselines_find_a_feasible_design(a100, gpt2):
    from perfmodel.opt._baselines import run_baseline

    space, objective, cons = _bandwidth_problem(a100, gpt2, 120.0)
    for method in ("random", "grid", "cmaes", "tpe"):
        b = run_baseline(method, space, objective, cons, budget=64, seed=0)
        assert np.isfinite(b["loss"]) and b["evaluations"] <= 64 + 8, method
    with pytest.raises(pm.ModelInputError, match="discrete space"):
        run_baseline("exhaustive", space, objective, cons, budget=10)


def test_pareto_front_is_non_dominated_with_positive_hypervolume(a100, gpt2):
    """A weight sweep over tokens/s vs power (one vmapped run): every front point is
    feasible and non-dominated, the front spans a trade-off, hypervolume > 0."""
    space = opt.Space(a100, {"hardware.dram.bandwidth": opt.Real(5e11, 8e12)})
    objective = opt.Objective(gpt2, {"tokens_per_s": 1.0, "power": 1.0},
                              mix=({"batch": 1.0, "context": 512.0},))
    front = opt.pareto_front(space, objective, points=6, steps=50, progress=False)
    tps = [p["scores"]["tokens_per_s"] for p in front.points]
    pw = [p["scores"]["power"] for p in front.points]
    assert len(front.points) >= 3 and front.hypervolume > 0
    assert np.all(np.diff(tps) > 0) and np.all(np.diff(pw) > 0)   # faster costs power
    costs = np.stack([-np.log(tps), np.log(pw)], axis=1)
    assert len(opt.non_dominated(costs)) == len(costs)
    assert opt.hypervolume(np.array([[0.0, 1.0], [1.0, 0.0]]), (2.0, 2.0)) == 3.0


def test_bench_codesign_json(tmp_path, capsys):
    """`perfmodel bench codesign --json`: one row per method with the documented keys,
    the baselines at the gradient run's budget."""
    from perfmodel._cli import main

    (tmp_path / "small.toml").write_text(SMALL_TOML)
    assert main(["bench", "codesign", "--space", str(tmp_path / "small.toml"), "--starts",
                 "2", "--steps", "10", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["method"] for r in rows] == ["gradient", "random", "grid", "cmaes", "tpe"]
    for r in rows:
        assert set(r) == {"space", "method", "budget", "wall_s", "best", "sense", "stopped"}
        assert r["sense"] == "max" and r["best"] is None or r["best"] > 0
    assert all(r["budget"] <= rows[0]["budget"] + 256 for r in rows[1:])


def test_constraint_on_its_own_phase_bounds_ttft(a100, gpt2):
    """A time-to-first-token SLO (prefill latency at its own prompt) beside a decode
    objective: the bound is evaluated on its own builder and points."""
    space = opt.Space(a100, {"hardware.peak_flops.fp16": opt.Real(3e13, 8e14)})
    objective = opt.Objective(gpt2, "energy_per_token", mix=({"batch": 1.0,
                                                              "context": 512.0},))
    prefill = gpt2.prefill(8.0, 1024.0)

    def ttft(peak):
        hw = pm._paths.set_values(a100, {"peak_flops.fp16": peak})
        return float(pm.evaluate(hw, prefill, hard=True).latency)

    slo = ttft(2e14)
    ttft_c = opt.Constraint("latency", max=slo, phase="prefill",
                            mix=({"batch": 8.0, "prompt": 1024.0},))
    r = opt.optimize(space, objective, [ttft_c], starts=2, steps=100, progress=False)
    (c,) = r.constraint_report
    assert c["name"] == f"latency (prefill mix) <= {slo:g}"
    assert c["satisfied"] and c["value"] == pytest.approx(ttft(r.values[
        "hardware.peak_flops.fp16"]), rel=1e-5)
    assert set(r.score) == {"energy_per_token"}


def test_mixed_precision_dims(a100, gpt2):
    """workload.wbits.attention / .ffn move each weight group's bits (mixed precision),
    and a quality budget reads their parameter-weighted noise."""
    space = opt.Space(a100, {"workload.wbits.attention": opt.Integer(4, 16),
                             "workload.wbits.ffn": opt.Integer(2, 16)})
    hw, mapping, knobs = space.design(jnp.asarray([0.0, 1.0]), hard=True)
    assert {k: float(v) for k, v in knobs["wbits"].items()} == {"attention": 4.0,
                                                                 "ffn": 16.0}
    objective = opt.Objective(gpt2, "tokens_per_s", mix=({"batch": 1.0, "context": 512.0},))
    f = opt._objective.problem_fn(space, objective, [opt.Constraint("quality_loss", max=0.3)])
    loss, g = jax.jit(jax.value_and_grad(lambda u: f(u)[0]))(jnp.asarray([0.5, 0.5]))
    assert np.isfinite(float(loss)) and np.all(np.asarray(g) > 0)   # more bits: slower


def test_structural_variants_run_one_optimization_each(tmp_path):
    """[structure]: one run per GPU x tensor-parallel combination; a combination that
    cannot run (3 does not divide the KV heads) is reported, not fatal; the best feasible
    variant wins and names itself."""
    import dataclasses

    spec = tmp_path / "serve.toml"
    spec.write_text("""schema_version = 1
name = "serve-small"
hardware = "a100-80gb"
[workload]
name = "llama-3.2-1b"
phase = "continuous"
mix = {prompt = [512], generate = [128]}
[objective]
metric = "tokens_per_dollar"
[[constraints]]
metric = "latency"
max = 0.02
[dims]
"workload.batch" = {type = "integer", low = 1, high = 256}
[structure]
hardware = ["a100-80gb", "h100-sxm"]
tensor_parallel = [1, 3]
""")
    p = opt.load_problem(spec)
    assert [v["label"] for v in p.variants] == [
        "a100-80gb, tensor_parallel=1", "a100-80gb, tensor_parallel=3",
        "h100-sxm, tensor_parallel=1", "h100-sxm, tensor_parallel=3"]
    r, table = opt.optimize_problem(p, starts=2, steps=6, seed=0)
    bad = [row for row in table if "error" in row]
    assert len(bad) == 2 and all("tensor_parallel" in row["error"] for row in bad)
    ok = [row for row in table if "error" not in row]
    best = max(row["best"] for row in ok if row["feasible"])
    assert r.feasible and r.best == pytest.approx(best)
    assert r.variant["options"] == {"tensor_parallel": 1}
    with pytest.raises(pm.ModelInputError, match="structure.bogus"):
        bogus = spec.read_text().replace("tensor_parallel = [1, 3]", "bogus = [1]")
        spec.write_text(bogus)
        opt.load_problem(spec)
    assert dataclasses.is_dataclass(r)

"""The `perfmodel` command line: a stable contract, JSON out with --json.

    perfmodel list {hardware,workloads}
    perfmodel predict --hardware NAME|FILE --workload NAME|FILE [--phase ...] [--json]
    perfmodel reproduce [--system NAME] [--json]
    perfmodel validate [--json]
    perfmodel sensitivity --hardware ... --workload ... [--metric M] [--top N] [--json]
    perfmodel calibrate [--hardware NAME|FILE] [--data FILE] [--free a,b,...] [--folds K]
                        [--noise F] [--out fitted.toml] [--json] [--write-presets]
    perfmodel optimize --space NAME|FILE [--objective M] [--starts K] [--steps N]
                       [--budget N] [--seed S] [--out DIR] [--resume] [--json]
    perfmodel bench [--json] [--designs N] [--all-targets | --target PRESET]
    perfmodel bench codesign [--space NAME] [--json]
    perfmodel demo [--out DIR]

Bad input prints one sentence naming the field and its valid range to stderr and exits
with code 2.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys

from perfmodel._errors import ModelInputError

PHASES = ("decode", "prefill", "request", "continuous", "inference")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's own convention)
        sys.stderr.write(f"perfmodel: error: {message}.\n")
        raise SystemExit(2)


def _finite(name):
    def parse(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--{name} must be a number, got {text!r}")
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"--{name} must be finite, got {text!r}")
        return v
    return parse


def _weight_bits(text):
    """``--wbits``: a number, or bits per weight group (``attention=8,ffn=3``)."""
    if "=" not in text:
        return _finite("wbits")(text)
    out = {}
    for part in text.split(","):
        group, _, value = part.partition("=")
        out[group.strip()] = _finite(f"wbits {group.strip()}")(value)
    return out


def _load_hardware(ref: str):
    from perfmodel import hardware

    if ref.endswith(".toml") or pathlib.Path(ref).is_file():
        return hardware.load(ref)
    return hardware.preset(ref)


def _load_workload(ref: str):
    from perfmodel import workloads

    if ref.endswith(".json") or pathlib.Path(ref).is_file():
        return workloads.load(ref)
    return workloads.preset(ref)


#: Workload-shape flags of `predict` each phase uses (the others are an error), and
#: their defaults when not given.
PHASE_FLAGS = {"decode": ("batch", "context"), "prefill": ("batch", "prompt"),
               "request": ("batch", "prompt", "generate"),
               "continuous": ("batch", "prompt", "generate"), "inference": ("batch",)}
SHAPE_DEFAULTS = {"batch": 1.0, "prompt": 512.0, "context": 1024.0, "generate": 128.0}


def _shape_flags(a, phase: str, what: str, wl=None) -> dict:
    """The shape flags ``phase`` uses, as floats: whole numbers (``--batch``,
    ``--prompt``, ``--generate`` >= 1, ``--context`` >= 0; the Python API keeps real
    values for differentiation), defaults for the unset ones; a flag the phase does not
    use is an error rather than silently ignored."""
    used = PHASE_FLAGS[phase]
    for flag in SHAPE_DEFAULTS:
        if getattr(a, flag, None) is not None and flag not in used:
            uses = " and ".join(f"--{f}" for f in used)
            raise ModelInputError(f"--{flag} is not used by {what}; it uses {uses}.")
    out = {}
    for flag in used:
        v = getattr(a, flag, None)
        if v is None:
            v = SHAPE_DEFAULTS[flag]
            limit = getattr(wl, "max_context", 0)
            if flag == "context" and limit:  # GPT-2: 1023 tokens + the new one
                v = min(v, limit - 1.0)
        least = 0 if flag == "context" else 1
        if v != int(v) or v < least:
            kind = ("a non-negative integer (>= 0)" if least == 0
                    else "a positive integer (> 0)")
            raise ModelInputError(f"--{flag} = {v:g} is invalid; it must be {kind}.")
        out[flag] = float(v)
    return out


def _llm_phase(wl, a):
    """(phase, shape, builder keywords) of an LLM's ``predict`` flags."""
    phase = a.phase or "decode"
    if phase not in ("decode", "prefill", "request", "continuous"):
        raise ModelInputError(f"--phase {phase} is not valid for the LLM {wl.name}; "
                              "valid: decode, prefill, request, continuous.")
    n = _shape_flags(a, phase, f"--phase {phase}" if a.phase else
                     "--phase decode (the default for an LLM)", wl)
    kw = dict(wbits=a.wbits, abits=a.abits, kvbits=a.kvbits, attention=a.attention,
              tensor_parallel=getattr(a, "tensor_parallel", None) or 1)
    return phase, n, kw


def _phase_ops(wl, a):
    from perfmodel.workloads import CNN

    if isinstance(wl, CNN):
        if a.phase not in (None, "inference"):
            raise ModelInputError(f"--phase {a.phase} is not valid for the CNN {wl.name}; "
                                  "valid: inference.")
        if getattr(a, "tensor_parallel", None) not in (None, 1):
            raise ModelInputError(f"--tensor-parallel is for LLMs; the CNN {wl.name} runs "
                                  "on one device.")
        n = _shape_flags(a, "inference", f"the CNN {wl.name} (phase inference)")
        if isinstance(a.wbits, dict):
            raise ModelInputError(f"--wbits per group is for LLMs; the CNN {wl.name} takes "
                                  "one number.")
        return wl.inference(n["batch"], wbits=a.wbits or 16.0, abits=a.abits)
    phase, n, kw = _llm_phase(wl, a)
    # positional, in PHASE_FLAGS order (continuous calls its batch the concurrency)
    return getattr(wl, phase)(*(n[k] for k in PHASE_FLAGS[phase]), **kw)


def _fmt_time(t: float) -> str:
    for unit, f in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if t >= f:
            return f"{t / f:.3g} {unit}"
    return f"{t * 1e9:.3g} ns"


def _print_report(rep, hw, wl, ops, echo=None):
    d = rep.to_dict()
    print(f"{hw.name} | {wl.name} {ops.phase}")
    if echo:
        _print_echo(echo)
    print(f"  latency        {_fmt_time(d['latency_s'])}")
    devices = (echo or {}).get("conditions", {}).get("devices", 1)
    per_device = (f"   ({d['tokens_per_s'] / devices:.4g} per device, {devices} devices)"
                  if devices > 1 else "")
    print(f"  tokens/s       {d['tokens_per_s']:.4g}{per_device}")
    group = f", all {devices} devices" if devices > 1 else ""
    print(f"  energy         {d['energy_j']:.4g} J   ({d['energy_per_token_j']:.4g} J/token, "
          f"{d['power_w']:.4g} W average{group})")
    print(f"  bound          {d['bound']}")
    rows = d["breakdown"]
    request = any(r["phase"] != ops.phase for r in rows)   # prefill + decode rows
    counted = all(r["count"] is not None for r in rows)
    print("  per op class: count = instances in one evaluation; time (all) and share "
          "sum over them")
    w = max([len(r["name"]) for r in rows] + [2]) + 2
    print(f"  {'op':<{w}}" + (f"{'phase':<9}" if request else "")
          + (f"{'count':>8}" if counted else "") + f"{'time (all)':>12}"
          + (f"{'per instance':>14}" if counted else "") + f"{'share':>8}  bound")
    for r in rows:
        share = r["time_s"] / d["latency_s"] * 100
        n = r["count"]
        each = r["time_per_instance_s"]
        print(f"  {r['name']:<{w}}" + (f"{r['phase']:<9}" if request else "")
              + (f"{(f'{n:.0f}' if n == int(n) else f'{n:.4g}'):>8}" if counted else "")
              + f"{_fmt_time(r['time_s']):>12}"
              + (f"{(_fmt_time(each) if each else '-'):>14}" if counted else "")
              + f"{share:7.1f}%  {r['bound']}")
    if request:
        print("  (decode attention: one row per quadrature node over the growing context; "
              "count = weight x layers)")


def cmd_list(a):
    from perfmodel import hardware, workloads
    from perfmodel.hardware._registry import preset_family

    hw = a.what == "hardware"
    names = hardware.list_presets() if hw else workloads.list_presets()
    items = []
    for n in names:
        obj = hardware.preset(n) if hw else workloads.preset(n)
        item = {"name": n, "kind": type(obj).__name__, "title": getattr(obj, "title", "")}
        if hw:
            item["family"] = preset_family(n)
        items.append(item)
    if a.json:
        print(json.dumps(items, indent=2))
        return
    cols = ("name", "family", "kind", "title") if hw else ("name", "kind", "title")
    widths = {c: max(len(c), *(len(str(it[c])) for it in items)) for c in cols}
    line = lambda row: "  ".join(  # noqa: E731  two spaces between columns at least
        f"{row[c]:<{widths[c]}}" for c in cols[:-1]) + "  " + row[cols[-1]]
    for it in items:  # no header line: the first column is the name (scripts rely on it)
        print(line(it).rstrip())


def _workload_echo(wl, ops, a) -> dict:
    """What was evaluated: the model's size, its KV cache (and recurrent state) per
    token / sequence at the evaluated KV bits, and the conditions (phase, shape, bits,
    devices), so a reader can check the prediction's inputs."""
    from perfmodel.workloads import CNN

    cnn = isinstance(wl, CNN)
    phase = ops.phase
    shape = _shape_flags(a, phase, phase, wl)  # already validated by _phase_ops
    wbits = a.wbits if a.wbits is not None else (16.0 if cnn else wl.default_wbits)
    conditions = dict(phase=phase, **shape, wbits=wbits, abits=a.abits)
    if not cnn:
        conditions.update(kvbits=a.kvbits, attention=a.attention)
    tp = getattr(a, "tensor_parallel", None) or 1
    conditions.update(devices=tp, tensor_parallel=tp, pipeline_parallel=1)
    echo = dict(parameters=wl.parameter_count(),
                kv_bytes_per_token=0.0 if cnn else float(wl.kv_bytes_per_token(a.kvbits)))
    if not cnn and wl.ssm is not None:
        echo["state_bytes_per_sequence"] = float(wl.state_bytes_per_sequence(a.kvbits))
    echo["conditions"] = conditions
    if not cnn:
        echo.update(_quality(wl, wbits, a))
    return echo


def _quality(wl, wbits, a) -> dict:
    """``quality_loss`` (perplexity increase on WikiText-2 over 16 bits, 0 at 16 bits) and
    its footing (``quality``) for the evaluated bit-widths (docs/quality.md)."""
    from perfmodel.workloads import quality_report

    smallest = min(wbits.values()) if isinstance(wbits, dict) else wbits
    method = a.quant_method or ("bitnet-b1.58" if smallest < 2 else "gptq")
    if a.group_size != "channel" and not str(a.group_size).isdigit():
        raise ModelInputError(f"--group-size = {a.group_size!r} is invalid; it must be a "
                              "positive integer or 'channel'.")
    group = None if a.group_size == "channel" else int(a.group_size)
    r = quality_report(wl, wbits=wbits, abits=a.abits, kvbits=a.kvbits, method=method,
                       group_size=group)
    return {"quality_loss": r.delta_ppl,
            "quality": {"dataset": "wikitext2", "ppl_fp16": r.ppl_fp16, "ppl": r.ppl,
                        "method": method, "group_size": group, "methods": r.methods,
                        "extrapolated": r.extrapolated, "reasons": list(r.reasons),
                        "assumptions": list(r.assumptions),
                        "typical_error_factor": r.expected_error_factor}}


def _fmt_bytes(b: float) -> str:
    for unit, f in (("GiB", 2.0 ** 30), ("MiB", 2.0 ** 20), ("KiB", 2.0 ** 10)):
        if b >= f:
            return f"{b / f:.3g} {unit}"
    return f"{b:.3g} B"


def _print_echo(echo: dict) -> None:
    c = echo["conditions"]
    kv = (f", KV cache {_fmt_bytes(echo['kv_bytes_per_token'])}/token"
          if echo["kv_bytes_per_token"] else "")
    state = (f", recurrent state {_fmt_bytes(echo['state_bytes_per_sequence'])}/sequence"
             if echo.get("state_bytes_per_sequence") else "")
    n = echo["parameters"]
    size = f"{n / 1e9:.4g} B" if n >= 1e9 else f"{n / 1e6:.4g} M"
    print(f"  parameters     {size}{kv}{state}")
    shape = ", ".join(f"{k} {c[k]:g}" for k in ("batch", "prompt", "context", "generate")
                      if k in c)
    def show(v):
        return ",".join(f"{g}={b:g}" for g, b in v.items()) if isinstance(v, dict) \
            else f"{v:g}"

    bits = "/".join(show(c[k]) for k in ("wbits", "abits", "kvbits") if k in c)
    names = "W/A/KV" if "kvbits" in c else "W/A"
    print(f"  conditions     {c['phase']}: {shape}; {names} bits {bits}; "
          f"{c['devices']} device" + ("s (tensor parallel)" if c["devices"] > 1 else ""))
    m = echo.get("memory")
    if m:
        room = (f"{_fmt_bytes(m['weights_bytes'])} weights + "
                f"{_fmt_bytes(m['kv_cache_bytes'])} KV cache of "
                f"{_fmt_bytes(m['capacity_bytes'])} per device")
        if c["phase"] == "continuous":
            verdict = ("all in flight at once" if m["concurrent_batch"] >= c["batch"] else
                       f"the KV cache admits {m['concurrent_batch']:.0f} requests at once; "
                       "the rest queue")
        elif m["offload_tier"]:
            verdict = "beyond it streamed from the offload tier" if not m["fits_in_memory"] \
                else "fits"
        elif m["waves"] <= 1:
            verdict = "fits"
        else:
            from perfmodel._serve import KV_CACHE_FRACTION

            verdict = (f"the batch's KV cache does not fit (it gets {KV_CACHE_FRACTION:.0%} of what "
                       f"the weights leave): {m['concurrent_batch']:g} sequences at once, "
                       f"{m['waves']:g} waves")
        print(f"  memory         {room}: {verdict}")
    if "quality_loss" in echo:
        q = echo["quality"]
        flag = " (extrapolated: " + "; ".join(q["reasons"]) + ")" if q["extrapolated"] else ""
        print(f"  quality        +{echo['quality_loss']:.3g} perplexity on WikiText-2 "
              f"({q['method']}, typical error x{q['typical_error_factor']:.2g}){flag}")


def cmd_predict(a):
    from perfmodel import evaluate, serve
    from perfmodel.workloads import CNN

    hw = _load_hardware(a.hardware)
    wl = _load_workload(a.workload)
    ops = _phase_ops(wl, a)
    if isinstance(wl, CNN):
        rep = evaluate(hw, ops, hard=a.exact)
    else:  # as a serving engine runs it: waves when the KV cache does not fit
        phase, n, kw = _llm_phase(wl, a)
        rep = serve(hw, wl, phase, **n, **kw, hard=a.exact)
    d = rep.to_dict()
    bad = [k for k in ("latency_s", "energy_j", "tokens_per_s") if not math.isfinite(d[k])]
    if bad:  # never print a NaN result
        raise ModelInputError(f"the prediction for {bad[0]} is not finite; check the "
                              "hardware and workload values.")
    echo = _workload_echo(wl, ops, a)
    if rep.waves is not None:
        echo["memory"] = _memory_echo(hw, ops, rep)
    if a.json:
        d.update(hardware=hw.name, workload=wl.name, phase=ops.phase, **echo)
        d["tokens_per_s_per_device"] = d["tokens_per_s"] / echo["conditions"]["devices"]
        print(json.dumps(d, indent=2))
    else:
        _print_report(rep, hw, wl, ops, echo=echo)


def _memory_echo(hw, ops, rep) -> dict:
    """Per device: the weights, the whole batch's KV cache (at its final length), the
    memory, and the serving rule's outcome (`perfmodel.serve`)."""
    capacity = hw.serving_capacity()
    dram = getattr(getattr(hw, "dram", None), "capacity", None)
    cap = float(capacity if capacity is not None else dram if dram is not None else math.nan)
    need = float(ops.weight_footprint) + float(ops.kv_footprint)
    return dict(weights_bytes=float(ops.weight_footprint),
                kv_cache_bytes=float(ops.kv_footprint), capacity_bytes=cap,
                offload_tier=capacity is None and getattr(hw, "offload", None) is not None,
                fits_in_memory=bool(need <= cap), concurrent_batch=float(rep.batch),
                waves=float(rep.waves))


def cmd_reproduce(a):
    from perfmodel.fit import reproduce

    rows = reproduce(a.system, progress=_progress_line if sys.stderr.isatty() else None)
    if a.json:
        keys = ("id", "system", "baseline", "workload", "metric", "published", "predicted",
                "rel_error", "tolerance", "passed", "fitted", "known_miss", "source", "cases")
        print(json.dumps([{k: r[k] for k in keys} for r in rows], indent=2))
        return
    w = max([len(r["id"]) for r in rows] + [5]) + 2
    ws = max([len(r["system"]) for r in rows] + [6]) + 2
    wm = max([len(r["metric"]) for r in rows] + [6]) + 2
    print(f"{'claim':<{w}}{'system':<{ws}}{'metric':<{wm}}{'published':>10}{'predicted':>10}"
          f"{'error':>8}{'tol':>6}  pass")
    for r in rows:
        # "fit": a preset parameter was fitted to this claim, so agreement is no test
        flag = (("fit" if r["fitted"] else "yes") if r["passed"]
                else ("miss (known)" if r["known_miss"] else "NO"))
        print(f"{r['id']:<{w}}{r['system']:<{ws}}{r['metric']:<{wm}}{r['published']:>10.4g}"
              f"{r['predicted']:>10.4g}{r['rel_error'] * 100:>7.1f}%{r['tolerance'] * 100:>5.0f}%"
              f"  {flag}")
    fitted = sum(bool(r["passed"] and r["fitted"]) for r in rows)
    missed = [r for r in rows if not r["passed"]]
    known = sum(bool(r["known_miss"]) for r in missed)
    why = (f" ({known} known misses" + (f", {len(missed) - known} NOT known)"
                                       if known < len(missed) else ")")) if missed else ""
    print(f"{sum(r['passed'] for r in rows) - fitted} reproduced within tolerance, {fitted} "
          f"fitted (a preset parameter was fitted to the claim: not an independent check), "
          f"{len(missed)} outside tolerance{why}")


def cmd_sensitivity(a):
    from perfmodel import sensitivity

    if a.top is not None and a.top < 1:
        raise ModelInputError(f"--top must be a positive number of rows, got {a.top}.")
    hw = _load_hardware(a.hardware)
    wl = _load_workload(a.workload)
    ops = _phase_ops(wl, a)
    rows = sensitivity(hw, ops, metric=a.metric, hard=a.exact)
    shown = rows[:a.top] if a.top else rows
    if a.json:
        print(json.dumps(shown, indent=2))
        return
    print(f"{hw.name} | {wl.name} {ops.phase} | elasticity of {a.metric}: "
          f"d log {a.metric} / d log parameter")
    w = max([len(r["name"]) for r in shown] + [9]) + 2
    print(f"  {'parameter':<{w}}{'value':>12}  {'unit':<12}{'elasticity':>11}")
    zero = [r["name"] for r in shown if r["elasticity"] == 0.0]
    for r in shown:
        if r["elasticity"] != 0.0:
            print(f"  {r['name']:<{w}}{r['value']:>12.4g}  {r['unit']:<12}"
                  f"{r['elasticity']:>+11.4g}")
    if zero:
        print(f"  elasticity 0 (no effect on this workload): {', '.join(zero)}")


def _progress_line(done, total, label):
    """One overwritten stderr line: ``[done/total] label`` (a terminal only)."""
    end = "\n" if done == total else ""
    sys.stderr.write(f"\r\033[K[{done}/{total}] {label}{end}")
    sys.stderr.flush()


def cmd_measure(a):
    from perfmodel.fit._measure import measure

    # progress always: the harness takes minutes, and its lines go to stderr
    s = measure(a.out, quick=a.quick, progress=_progress_line)
    if a.json:
        print(json.dumps(s, indent=2))
        return
    print(f"measured {s['device']} on {s['date']}: {s['rows']} rows -> {s['out']}")
    print(f"  memory stream  {s['stream_bandwidth'] / 1e9:.3g} GB/s (the host target's DRAM "
          "bandwidth)")
    for k, v in s["attention"].items():
        print(f"  attention {k:<10}{_fmt_time(v)}")
    print(f"next: perfmodel calibrate --hardware host --data {s['out']}")


def cmd_calibrate(a):
    from perfmodel.fit import calibrate, write_presets

    if any(v is not None for v in (a.hardware, a.data, a.free, a.folds, a.out, a.noise)):
        from perfmodel.fit._command import report, run_calibrate

        if a.write_presets:
            raise ModelInputError("--write-presets belongs to the A100 kernel fit "
                                  "(perfmodel calibrate without other options).")
        result = run_calibrate(hardware=a.hardware, data=a.data, free=a.free,
                               folds=a.folds, out=a.out, noise=a.noise)
        if a.json:
            print(json.dumps({**result.to_dict(), "saved": a.out}, indent=2))
        else:
            print(report(result))
        return
    summary = calibrate()
    if a.write_presets:
        summary["written"] = write_presets(summary)
    if a.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"fit of the xPU efficiency model to {summary['data']}")
    for k, v in summary["parameters"].items():
        print(f"  {k:<24}{v['value']:>12.4g}  +- {v['rel_stderr'] * 100:.0f}%")
    m = summary["mape_percent"]
    print(f"  MAPE: all {m['all']:.1f}%, GEMM sweeps {m['gemm']:.1f}%, "
          f"GPT-3 layer ops {m['layer']:.1f}%")


def cmd_bench(a):
    from perfmodel._bench import bench_cases, run

    if a.what == "codesign":
        return cmd_bench_codesign(a)
    cases = bench_cases()
    if a.target:
        names = [c["hardware"] for c in cases]
        cases = [c for c in cases if c["hardware"] in a.target]
        if not cases:
            raise ModelInputError(f"--target must name benchmarked presets: {names}.")
    elif not a.all_targets:
        cases = cases[:1]
    results = []
    for c in cases:  # each target takes 10-20 s: print its figures as soon as they exist
        results.append(run(a.designs, case=c, genz=not a.no_genz))
        if not a.json:
            _print_bench(results[-1], a)
            sys.stdout.flush()
    if a.json:
        print(json.dumps(results[0] if len(results) == 1 else results, indent=2))


def cmd_validate(a):
    from perfmodel.fit import validate

    v = validate(progress=_progress_line if sys.stderr.isatty() else None)
    if a.json:
        print(json.dumps({"summary": v["summary"], "worst": v["worst"],
                          "rows": v["rows"]}, indent=2))
        return
    s = v["summary"]
    print(f"GPU serving validation (fit/data/serving/): {s['evaluated']} rows evaluated, "
          f"{s['skipped']} not (serving at a request rate), {s['software_anomaly']} software "
          "anomalies listed apart")
    print(f"  MAPE {s['mape'] * 100:.1f}%, median predicted/measured {s['median_ratio']:.2f}")
    for k, g in s["by_kind"].items():
        print(f"  {k:<12}{g['rows']:>4} rows  MAPE {g['mape'] * 100:5.1f}%")
    print(f"  {'framework':<14}{'GPU':<12}{'rows':>5}{'MAPE':>8}")
    for g in s["by_framework_gpu"]:
        print(f"  {g['framework']:<14}{g['hardware']:<12}{g['rows']:>5}{g['mape'] * 100:>7.1f}%")
    print("  worst rows:")
    for r in v["worst"]:
        print(f"    {r['id']:<52}{r['metric']:<22}{r['measured']:>10.4g}"
              f"{r['predicted']:>10.4g}{r['rel_error'] * 100:>8.1f}%")


def cmd_bench_codesign(a):
    from perfmodel.opt._bench import BENCH_SPACES, codesign_benchmark

    spaces = a.space or list(BENCH_SPACES)
    show = None if a.json else (lambda r: (print(_codesign_row(r)), sys.stdout.flush()))
    if not a.json:
        print(f"{'space':<12}{'method':<11}{'budget':>9}{'wall s':>9}{'best':>13}  sense  "
              "stopped by")
    rows = codesign_benchmark(spaces, starts=a.starts, steps=a.steps, seed=a.seed,
                              progress=show)
    if a.json:
        print(json.dumps(rows, indent=2))


def _codesign_row(r):
    best = "infeasible" if r["best"] is None else f"{r['best']:.5g}"
    return (f"{r['space']:<12}{r['method']:<11}{r['budget']:>9}{r['wall_s']:>9.1f}"
            f"{best:>13}  {r['sense']:<5}  {r['stopped']}")


def cmd_optimize(a):
    import pathlib as _pl

    from perfmodel import opt
    from perfmodel.opt._problems import load_problem, write_spec

    p = load_problem(a.space)
    objective = p.objective
    if a.objective:
        objective = opt.Objective(objective.workload, a.objective, phase=objective.phase,
                                  mix=objective.mix, weights=objective.weights,
                                  options=objective.options)
    if a.starts < 1 or (a.budget is not None and a.budget < a.starts):
        raise ModelInputError(f"--starts = {a.starts} must be >= 1 and --budget (total "
                              "gradient steps over all starts) at least --starts.")
    steps = a.steps if a.budget is None else a.budget // a.starts
    out = _pl.Path(a.out) if a.out else None
    if a.resume and out is None:
        raise ModelInputError("--resume needs --out DIR (where the run's state is).")
    table = None
    if p.variants:  # structural choices: one run per variant ([structure])
        if a.resume:
            raise ModelInputError("--resume is not supported for a space with [structure] "
                                  "variants; rerun it (each variant is a separate run).")
        import dataclasses as _dc

        r, table = opt.optimize_problem(_dc.replace(p, objective=objective),
                                        starts=a.starts, steps=steps, seed=a.seed)
        if r.variant["hardware"]:
            p = _dc.replace(p, preset=r.variant["hardware"])
    else:
        r = opt.optimize(p.space, objective, p.constraints, starts=a.starts, steps=steps,
                         seed=a.seed, checkpoint=out, resume=a.resume)
    written = None
    if out is not None and p.preset:
        written = str(write_spec(r, out / "best.toml", preset=p.preset))
        (out / "result.json").write_text(json.dumps(r.summary(), indent=2) + "\n")
    if a.json:
        print(json.dumps({**r.summary(), "out": written, "space": p.name,
                          **({"variants": table} if table else {})}, indent=2))
        return
    print(f"{p.name}: {objective.describe()}")
    for row in table or []:
        what = (f"error: {row['error']}" if "error" in row else
                f"best {row['best']:.6g}{'' if row['feasible'] else ' (infeasible)'}")
        print(f"  variant {row['label']:<36}{what}")
    if table:
        print(f"  chosen variant: {r.variant['label']}")
    print(f"  best ({'feasible' if r.feasible else 'INFEASIBLE: least violating'}, exact, "
          f"{r.starts} starts x {r.steps} steps, seed {r.seed}, {r.wall_s:.1f} s)")
    for k, v in r.values.items():
        print(f"    {k:<32}{v:.6g}")
    for k, v in r.score.items():
        print(f"  {k:<34}{v:.6g}")
    for c in r.constraint_report:
        flag = "active" if c["active"] else ("met" if c["satisfied"] else "VIOLATED")
        print(f"  constraint {c['name']:<24} value {c['value']:.4g}  ({flag})")
    if written:
        print(f"  written: {written} (perfmodel predict --hardware {written} ...)")


def _print_bench(r, a):
    print(f"{r['workload']} on {r['hardware']}, {r['designs']} random designs, {r['device']}")
    print(f"  evaluations/s            {r['evals_per_s']:.3g}  (one plain vmap "
          f"{r['evals_per_s_single_vmap']:.3g}; chunks of {r['chunk']} "
          f"{r['evals_per_s_chunked']:.3g})")
    agree = r["minor_vs_major"]
    print(f"  evaluations/s with grad  {r['evals_per_s_grad']:.3g}  "
          f"(chunks of {r['chunk_grad']}; plain vmap in chunks of {r['chunk_grad_major']} "
          f"{r['evals_per_s_grad_major']:.3g},"
          f" agreeing to {agree['latency_rel']:.1g} in latency and "
          f"{agree['elasticity_abs']:.1g} in elasticities)")
    print(f"  jit compile              {r['compile_s']:.2f} s "
          f"(with grad {r['compile_grad_s']:.2f} s)")
    print(f"  one jitted evaluation    {r['single_eval_s'] * 1e6:.1f} us")
    gz = r.get("genz")
    if gz:
        print(f"  GenZ one evaluation      {gz['seconds_per_eval'] * 1e3:.1f} ms "
              f"(x{r['speedup_vs_genz_single']:.0f} slower than one jitted evaluation, "
              f"x{r['speedup_vs_genz_vmapped']:.3g} per design vmapped)")
    elif not a.no_genz and r["hardware"] == "a100-80gb":
        print("  GenZ: not installed (optional: .venv/bin/pip install -e '.[bench]' from a "
              "checkout)")


def cmd_demo(a):
    from perfmodel._demo import run

    run(a.out)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="perfmodel", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("list", help="list presets")
    s.add_argument("what", choices=("hardware", "workloads"))
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("predict", help="predict latency/energy of a workload phase")
    s.add_argument("--hardware", required=True, help="preset name or spec file (.toml)")
    s.add_argument("--workload", required=True, help="preset name or config file (.json)")
    s.add_argument("--phase", choices=PHASES)
    # shape flags: whole numbers, each used by some phases only (PHASE_FLAGS); unset
    # ones take SHAPE_DEFAULTS
    s.add_argument("--batch", type=_finite("batch"), default=None,
                   help="sequences (LLM; for --phase continuous the requests in flight) or "
                   "images (CNN), a positive integer (default 1)")
    s.add_argument("--prompt", type=_finite("prompt"), default=None,
                   help="prompt tokens, prefill and request phases (default 512)")
    s.add_argument("--context", type=_finite("context"), default=None,
                   help="tokens already in the KV cache, decode phase (default 1024)")
    s.add_argument("--generate", type=_finite("generate"), default=None,
                   help="tokens generated per sequence, request phase (default 128)")
    s.add_argument("--wbits", type=_weight_bits, default=None,
                   help="weight bits: one number, or per group, e.g. attention=8,ffn=3")
    s.add_argument("--abits", type=_finite("abits"), default=16.0)
    s.add_argument("--kvbits", type=_finite("kvbits"), default=16.0)
    s.add_argument("--attention", choices=("fused", "per-head", "standard"), default="fused",
                   help="fused (flash; GQA heads share K/V reads, default), per-head (each "
                   "query head reads its K/V: pre-XQA TensorRT-LLM decode) or standard")
    s.add_argument("--tensor-parallel", type=int, default=None, metavar="N",
                   help="LLM: split heads and FFN over N devices with an all-reduce per "
                   "sublayer (N divides the KV heads and the FFN width; default 1)")
    s.add_argument("--quant-method", help="quantization method for the quality estimate "
                   "(gptq, awq, omniquant, quip-sharp, quarot, smoothquant, kivi, kvquant, "
                   "rtn, bitmod, bitnet-b1.58; default gptq, or bitnet-b1.58 below 2 bits)")
    s.add_argument("--group-size", default="128", help="weight quantization group size for "
                   "the quality estimate, or 'channel'")
    s.add_argument("--exact", action="store_true", help="exact (hard) model, not smooth")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("reproduce", help="published claims vs predictions")
    s.add_argument("--system")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_reproduce)

    # the workload options are predict's own (parents=): one definition for both
    s = sub.add_parser("sensitivity", parents=[sub.choices["predict"]], add_help=False,
                       help="elasticities of a metric w.r.t. every hardware parameter")
    s.add_argument("--metric", default="latency",
                   help="a scalar Report metric: latency, energy, tokens_per_s, "
                        "energy_per_token, edp, power, area, ...")
    s.add_argument("--top", type=int, default=None,
                   help="show the N largest elasticities only")
    s.set_defaults(func=cmd_sensitivity)

    s = sub.add_parser("measure", help="microbenchmarks on this machine's JAX backend, "
                       "written as a measurement table for perfmodel calibrate")
    s.add_argument("--out", required=True, help="measurement table to write (.csv)")
    s.add_argument("--quick", action="store_true", help="a few shapes only (~30 s)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_measure)

    s = sub.add_parser("validate", help="the GPU model against published serving "
                       "measurements (fit/data/serving/)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_validate)

    s = sub.add_parser("calibrate", help="fit named parameters of a target to measurements "
                       "(no options: the GPU efficiency model to measured A100 kernels)")
    s.add_argument("--hardware", help="the target to calibrate: a preset name or spec file "
                   "(default: the data's only hardware)")
    s.add_argument("--data", help="a measurement CSV (docs/calibration.md; shipped files in "
                   "fit/data/measurements/ by name) or claims:ID,ID,... (default: the "
                   "shipped rows on --hardware)")
    s.add_argument("--free", help="comma-separated parameter names to fit (as perfmodel "
                   "sensitivity names them; default: the family's efficiencies and overhead)")
    s.add_argument("--folds", type=int, help="k-fold cross-validation (default 5; 0: none)")
    s.add_argument("--noise", type=float, help="the measurements' relative error (e.g. "
                   "0.05) for the uncertainty (default: estimated from the residuals)")
    s.add_argument("--out", help="write the fitted target as a spec file that extends the "
                   "preset (perfmodel predict --hardware FILE)")
    s.add_argument("--json", action="store_true")
    s.add_argument("--write-presets", action="store_true",
                   help="write the fitted values into the GPU preset files")
    s.set_defaults(func=cmd_calibrate)

    s = sub.add_parser("demo", help="Llama-2-7B on A100/H100/CPU: table and roofline plot")
    s.add_argument("--out", default="out", help="folder for roofline.png")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("optimize", help="co-design: optimize a space (perfmodel.opt)")
    s.add_argument("--space", required=True, help="a shipped space name or a TOML file")
    s.add_argument("--objective", help="override the space's objective metric")
    s.add_argument("--starts", type=int, default=16)
    s.add_argument("--steps", type=int, default=300, help="gradient steps per start")
    s.add_argument("--budget", type=int, help="total gradient steps over all starts "
                   "(overrides --steps)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", help="folder for the checkpoint, every evaluated point, "
                   "result.json and best.toml")
    s.add_argument("--resume", action="store_true", help="continue the run in --out")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_optimize)

    s = sub.add_parser("bench", help="evaluations/s benchmark; 'bench codesign': the "
                       "optimizer against search baselines")
    s.add_argument("what", nargs="?", choices=("codesign",),
                   help="codesign: gradient vs random/grid/CMA-ES/TPE/exhaustive")
    s.add_argument("--space", action="append", help="codesign: only these spaces")
    s.add_argument("--starts", type=int, default=16, help="codesign: gradient starts")
    s.add_argument("--steps", type=int, default=200, help="codesign: gradient steps")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--json", action="store_true")
    s.add_argument("--designs", type=int, default=100_000)
    s.add_argument("--no-genz", action="store_true", help="skip the GenZ comparison")
    s.add_argument("--target", action="append", metavar="PRESET",
                   help="benchmark this family's case (repeatable); see --all-targets")
    s.add_argument("--all-targets", action="store_true",
                   help="one case per target family (each family's BENCH_CASE)")
    s.set_defaults(func=cmd_bench)
    return p


def main(argv=None) -> int:
    from perfmodel._spec import one_line_warnings

    args = build_parser().parse_args(argv)
    try:
        with one_line_warnings():  # a PlausibilityWarning is one line on stderr
            args.func(args)
    except ModelInputError as e:
        sys.stderr.write(f"perfmodel: error: {e}\n")
        return 2
    except BrokenPipeError:  # e.g. `perfmodel list hardware | head`
        return 0
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

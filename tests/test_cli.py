"""The `perfmodel` command line: output contracts (--json), bad input -> one line + exit 2.

Most tests run `perfmodel._cli.main` in-process (fast); one runs the installed console
script to prove the entry point works.
"""

import json
import math
import os
import pathlib
import re
import subprocess
import sys

import pytest

import perfmodel as pm
from perfmodel._cli import main

REPO = pathlib.Path(__file__).resolve().parents[1]
PRESETS = REPO / "hardware" / "presets"
WORKLOAD_PRESETS = REPO / "workloads" / "presets"


@pytest.fixture(scope="module", autouse=True)
def _warm_backend():
    """Initialize JAX (and any one-time backend warnings) before output is captured."""
    import perfmodel as pm

    pm.evaluate(pm.hardware.preset("a100-80gb"),
                pm.workloads.preset("llama-2-7b").decode(1.0, 16.0))


def run_cli(capsys, *args):
    """(exit code, stdout, stderr) of `perfmodel *args`, in-process."""
    capsys.readouterr()  # drop anything printed before
    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:  # argparse errors exit via SystemExit
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


# --------------------------------------------------------------------------- list
@pytest.mark.parametrize("what,expected", [
    ("hardware", {"a100-80gb", "h100-sxm", "neoverse-n1"}),
    ("workloads", {"llama-2-7b", "mixtral-8x7b", "resnet-50"}),
])
def test_list(capsys, what, expected):
    rc, out, err = run_cli(capsys, "list", what)
    assert rc == 0, err
    names = [line.split()[0] for line in out.splitlines()]
    assert expected <= set(names)
    assert names == sorted(names)

    rc, out, err = run_cli(capsys, "list", what, "--json")
    assert rc == 0, err
    items = json.loads(out)
    assert isinstance(items, list)
    assert all(isinstance(i, dict) and "name" in i and "title" in i for i in items)
    assert [i["name"] for i in items] == names


# --------------------------------------------------------------------------- predict
REPORT_KEYS = {"latency_s", "energy_j", "tokens_per_s", "energy_per_token_j", "bound",
               "breakdown"}


def _check_report(d):
    assert isinstance(d, dict)
    assert REPORT_KEYS <= set(d), REPORT_KEYS - set(d)
    for k in ("latency_s", "energy_j", "tokens_per_s", "energy_per_token_j"):
        assert isinstance(d[k], (int, float)) and math.isfinite(d[k]) and d[k] > 0, (k, d[k])
    assert isinstance(d["bound"], str) and d["bound"]
    assert isinstance(d["breakdown"], list) and d["breakdown"]
    for row in d["breakdown"]:
        assert {"name", "time_s", "bound"} <= set(row), row
        assert isinstance(row["name"], str) and row["name"]
        assert math.isfinite(row["time_s"]) and row["time_s"] > 0, row
        assert isinstance(row["bound"], str) and row["bound"]
    # the per-op times add up to the latency (overheads are inside the op rows)
    assert sum(r["time_s"] for r in d["breakdown"]) == pytest.approx(d["latency_s"], rel=1e-4)
    assert d["energy_per_token_j"] == pytest.approx(
        d["energy_j"] / (d["tokens_per_s"] * d["latency_s"]), rel=1e-4)


B, PROMPT, CONTEXT, GENERATE = 4, 256, 2048, 64


@pytest.mark.parametrize("hardware", ["a100-80gb", "h100-sxm"])
@pytest.mark.parametrize("phase,tokens", [
    ("decode", B),
    ("prefill", B * PROMPT),
    ("request", B * GENERATE),
])
def test_predict_json_llm(capsys, hardware, phase, tokens):
    from perfmodel._cli import PHASE_FLAGS

    shape = {"batch": B, "prompt": PROMPT, "context": CONTEXT, "generate": GENERATE}
    flags = [a for f in PHASE_FLAGS[phase] for a in (f"--{f}", shape[f])]  # others: error
    rc, out, err = run_cli(capsys, "predict", "--hardware", hardware, "--workload",
                           "llama-2-7b", "--phase", phase, *flags, "--json")
    assert rc == 0, err
    d = json.loads(out)  # exactly one JSON object on stdout
    _check_report(d)
    assert d["tokens_per_s"] == pytest.approx(tokens / d["latency_s"], rel=1e-5)
    assert d.get("phase", phase) == phase
    assert d.get("hardware", hardware) == hardware


@pytest.mark.parametrize("args, batch", [
    # default phase is decode
    (("--hardware", "a100-80gb", "--workload", "llama-2-7b", "--batch", 2), 2),
    # MoE, 4-bit weights, exact model
    (("--hardware", "h100-sxm", "--workload", "mixtral-8x7b", "--batch", 8, "--wbits", 4,
      "--exact"), 8),
])
def test_predict_json_decode_tokens_per_s(capsys, args, batch):
    rc, out, err = run_cli(capsys, "predict", *args, "--json")
    assert rc == 0, err
    d = json.loads(out)
    _check_report(d)
    assert d["tokens_per_s"] == pytest.approx(batch / d["latency_s"], rel=1e-5)


def test_predict_json_cnn_on_cpu(capsys):
    rc, out, err = run_cli(capsys, "predict", "--hardware", "neoverse-n1", "--workload",
                           "resnet-50", "--phase", "inference", "--batch", 2, "--json")
    assert rc == 0, err
    d = json.loads(out)
    _check_report(d)
    assert d["tokens_per_s"] == pytest.approx(2 / d["latency_s"], rel=1e-5)  # images/s
    assert any(r["name"].startswith("conv") for r in d["breakdown"])


def test_predict_hardware_and_workload_files(capsys, tmp_path):
    """A spec file that is a copy of a preset predicts exactly what the preset does."""
    hw = tmp_path / "mine.toml"
    hw.write_text((PRESETS / "a100-80gb.toml").read_text())
    cfg = json.loads((WORKLOAD_PRESETS / "llama-2-7b.json").read_text())["config"]
    wl = tmp_path / "config.json"
    wl.write_text(json.dumps(cfg))
    rc, out, err = run_cli(capsys, "predict", "--hardware", hw, "--workload", wl, "--json")
    assert rc == 0, err
    from_files = json.loads(out)
    rc, out, err = run_cli(capsys, "predict", "--hardware", "a100-80gb", "--workload",
                           "llama-2-7b", "--json")
    assert rc == 0, err
    from_presets = json.loads(out)
    assert from_files["latency_s"] == pytest.approx(from_presets["latency_s"], rel=1e-6)
    assert from_files["energy_j"] == pytest.approx(from_presets["energy_j"], rel=1e-6)


def test_predict_human_readable(capsys):
    rc, out, err = run_cli(capsys, "predict", "--hardware", "a100-80gb", "--workload",
                           "llama-2-7b", "--batch", 8)
    assert rc == 0, err
    assert "a100-80gb" in out and "llama-2-7b" in out and "decode" in out
    for label in ("latency", "tokens/s", "energy", "bound"):
        assert label in out
    lines = out.splitlines()
    header = [i for i, l in enumerate(lines) if re.match(
        r"\s*op\s+count\s+time \(all\)\s+per instance\s+share\s+bound\s*$", l)]
    assert len(header) == 1, out
    assert "count = instances" in lines[header[0] - 1], out   # what is summed is said
    rows = lines[header[0] + 1:]
    names = [r.split()[0] for r in rows if r.strip()]
    for op in ("qkv_proj", "out_proj", "ffn_up", "ffn_down", "lm_head"):
        assert op in names, out
    t = r"[\d.e+-]+ (s|ms|us|ns)"
    for r in rows:  # name, count, time of all instances, time of one, share %, bound
        assert re.match(rf"\s*\S+\s+\d+\s+{t}\s+{t}\s+[\d.]+%\s+\S+\s*$", r), r
    shares = [float(re.search(r"([\d.]+)%", r).group(1)) for r in rows]
    assert sum(shares) == pytest.approx(100.0, abs=0.1 * len(shares))


def test_predict_human_readable_cnn(capsys):
    rc, out, err = run_cli(capsys, "predict", "--hardware", "neoverse-n1", "--workload",
                           "resnet-50")
    assert rc == 0, err
    assert "inference" in out and re.search(r"^\s*op\s+count\s+time \(all\)", out, re.M)


# --------------------------------------------------------------------------- reproduce
CLAIM_KEYS = {"id", "system", "baseline", "workload", "metric", "published", "predicted",
              "rel_error", "tolerance", "passed", "fitted", "known_miss", "source", "cases"}




# Two systems here: every claim is evaluated in tests/test_fit.py (all of them through the
# CLI took 80 s of one worker)
@pytest.mark.parametrize("system", ["a100-80gb", "opima"])
def test_reproduce_json(capsys, system):
    from perfmodel.fit import load_claims

    rc, out, err = run_cli(capsys, "reproduce", "--system", system, "--json")
    assert rc == 0, err
    rows = json.loads(out)
    assert isinstance(rows, list)
    claims = {r["id"]: r for r in load_claims() if r["system"] == system}
    assert [r["id"] for r in rows] == list(claims)
    for r in rows:
        assert set(r) == CLAIM_KEYS, r
        # the preset parameters fitted to the claim (the CSV's fitted column), or null
        marked = [p for p in claims[r["id"]]["fitted"].split("|") if p]
        assert r["fitted"] == (marked or None), r
        assert (system == "opima") == (r["fitted"] is not None), r
        assert r["system"] == system
        assert isinstance(r["passed"], bool)
        for k in ("published", "predicted", "tolerance"):
            assert math.isfinite(r[k]) and r[k] > 0, (k, r)
        # signed: predicted / published - 1
        assert r["rel_error"] == pytest.approx(r["predicted"] / r["published"] - 1, abs=1e-9)
        assert r["passed"] == (abs(r["rel_error"]) <= r["tolerance"]), r
        assert r["source"].startswith(("http", "github:")), r


def test_reproduce_human_readable(capsys):
    rc, out, err = run_cli(capsys, "reproduce", "--system", "a100-80gb")
    assert rc == 0, err
    assert "a100-80gb" in out and re.search(
        r"\d+ reproduced within tolerance, \d+ fitted .*, \d+ outside tolerance", out)


def test_reproduce_table_marks_fitted_claims(capsys, monkeypatch):
    """A claim a preset parameter was fitted to shows "fit", and the summary counts it
    apart from reproductions and from misses (rows stubbed: the table only)."""
    def row(i, passed, fitted=None, known_miss=""):
        return {"id": f"c{i}", "system": "s", "baseline": None, "workload": "w",
                "metric": "speedup", "published": 2.0, "predicted": 2.0 if passed else 1.0,
                "rel_error": 0.0 if passed else -0.5, "tolerance": 0.2, "passed": passed,
                "fitted": fitted, "known_miss": known_miss, "source": "http://x",
                "cases": None}

    rows = [row(0, True), row(1, True, ["s:a.b"]), row(2, False, known_miss="why"),
            row(3, False)]
    monkeypatch.setattr(pm.fit, "reproduce", lambda *a, **k: rows)
    rc, out, err = run_cli(capsys, "reproduce")
    assert rc == 0, err
    flags = [line.split()[-1] for line in out.splitlines()[1:5]]
    assert flags == ["yes", "fit", "(known)", "NO"]
    assert ("1 reproduced within tolerance, 1 fitted" in out
            and "2 outside tolerance (1 known misses, 1 NOT known)" in out)

def test_reproduce_unknown_system(capsys):
    rc, out, err = run_cli(capsys, "reproduce", "--system", "no-such-gpu", "--json")
    assert rc == 2
    assert out == ""
    assert len(err.splitlines()) == 1 and "no-such-gpu" in err
    assert "Traceback" not in err


# --------------------------------------------------------------------------- bad input
def _preset_copy(tmp_path, name, edit=None, filename=None):
    text = (PRESETS / f"{name}.toml").read_text()
    if edit is not None:
        new = edit(text)
        assert new != text, "the edit did not change the file"
        text = new
    path = tmp_path / (filename or f"{name}-edited.toml")
    path.write_text(text)
    return path


def _sub_line(pattern, repl):
    return lambda text: re.sub(pattern, repl, text, count=1, flags=re.M)


def _bad_inputs(tmp_path):
    """(args, words the one-line error must all contain: the field, the bad value or
    the valid range) per bad input."""
    llm = ["--workload", "llama-2-7b"]
    a100 = ["--hardware", "a100-80gb"]
    neg = _preset_copy(tmp_path, "a100-80gb",
                       _sub_line(r"^bandwidth_GB_s = 2039\.0.*$", "bandwidth_GB_s = -5"),
                       "neg-bw.toml")
    zero = _preset_copy(tmp_path, "a100-80gb",
                        _sub_line(r"^bandwidth_GB_s = 2039\.0.*$", "bandwidth_GB_s = 0"),
                        "zero-bw.toml")
    malformed = tmp_path / "malformed.toml"
    malformed.write_text('schema_version = 1\nname = "broken\n[peak\nfp32 = \n')
    unknown = _preset_copy(tmp_path, "a100-80gb",
                           _sub_line(r"^(\[memory\.dram\]\n)", r"\1foo = 1\n"),
                           "unknown-field.toml")
    v99 = _preset_copy(tmp_path, "a100-80gb",
                       _sub_line(r"^schema_version = 1$", "schema_version = 99"),
                       "v99.toml")
    cfg = json.loads((WORKLOAD_PRESETS / "llama-2-7b.json").read_text())["config"]
    assert cfg["num_attention_heads"] == 32
    cfg["num_key_value_heads"] = 5
    gqa = tmp_path / "config.json"
    gqa.write_text(json.dumps(cfg))
    return {
        "batch-zero": (a100 + llm + ["--batch", "0"], ["batch", "> 0"]),
        "batch-negative": (a100 + llm + ["--batch", "-3"], ["batch", "> 0"]),
        "batch-nan": (a100 + llm + ["--batch", "nan"], ["batch", "finite"]),
        "context-negative": (a100 + llm + ["--context", "-1"], ["context", ">= 0"]),
        "wbits-zero": (a100 + llm + ["--wbits", "0"], ["wbits", "[1, 32]"]),
        "wbits-64": (a100 + llm + ["--wbits", "64"], ["wbits", "[1, 32]"]),
        "unknown-hardware": (["--hardware", "h100"] + llm, ["hardware", "'h100-sxm'"]),
        "unknown-workload": (a100 + ["--workload", "llama-9"], ["workload", "'llama-9'"]),
        "bandwidth-negative": (["--hardware", neg] + llm,
                               ["memory.dram.bandwidth_GB_s", "-5", "> 0"]),
        "bandwidth-zero": (["--hardware", zero] + llm,
                           ["memory.dram.bandwidth_GB_s", "> 0"]),
        "malformed-toml": (["--hardware", malformed] + llm, ["malformed.toml", "malformed"]),
        "unknown-field": (["--hardware", unknown] + llm, ["memory.dram.foo", "unknown"]),
        "schema-version": (["--hardware", v99] + llm, ["schema_version", "99"]),
        "gqa-heads": (a100 + ["--workload", gqa],
                      ["num_attention_heads", "num_key_value_heads"]),
        "does-not-fit": (["--hardware", "t4", "--workload", "llama-2-70b"],
                         ["weights need", "t4 holds", "offload"]),
        "inference-llm": (a100 + llm + ["--phase", "inference"], ["--phase", "inference"]),
        "decode-cnn": (a100 + ["--workload", "resnet-50", "--phase", "decode"],
                       ["--phase", "decode"]),
    }


BAD_CASES = ["batch-zero", "batch-negative", "batch-nan", "context-negative", "wbits-zero",
             "wbits-64", "unknown-hardware", "unknown-workload", "bandwidth-negative",
             "bandwidth-zero", "malformed-toml", "unknown-field", "schema-version",
             "gqa-heads", "does-not-fit", "inference-llm", "decode-cnn"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_one_line_exit_2(capsys, tmp_path, case):
    args, words = _bad_inputs(tmp_path)[case]
    rc, out, err = run_cli(capsys, "predict", *args)
    assert rc == 2, (rc, out, err)
    assert out == "", out
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    assert lines[0].startswith("perfmodel: error:"), err
    missing = [w for w in words if w not in lines[0]]
    assert not missing, (missing, err)


def test_unknown_hardware_suggests_close_names(capsys):
    rc, _, err = run_cli(capsys, "predict", "--hardware", "h100", "--workload", "llama-2-7b")
    assert rc == 2
    assert "hardware" in err and "'h100'" in err and "did you mean" in err
    assert "'h100-sxm'" in err


def test_argparse_errors_are_one_line(capsys):
    for args in (["predict", "--workload", "llama-2-7b"],           # missing --hardware
                 ["predict", "--hardware", "a100-80gb", "--workload", "llama-2-7b",
                  "--phase", "train"],                               # bad choice
                 ["list", "gpus"],
                 []):
        rc, out, err = run_cli(capsys, *args)
        assert rc == 2, args
        assert out == "" and len(err.splitlines()) == 1 and "Traceback" not in err, (args, err)


# --------------------------------------------------------------------------- entry point
def test_console_script_entry_point():
    exe = pathlib.Path(sys.executable).parent / "perfmodel"
    assert exe.is_file(), f"console script not installed at {exe}"
    env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    r = subprocess.run([str(exe), "predict", "--hardware", "a100-80gb", "--workload",
                        "llama-2-7b", "--json"], capture_output=True, text=True, timeout=120,
                       env=env)
    assert r.returncode == 0, r.stderr
    _check_report(json.loads(r.stdout))
    r = subprocess.run([str(exe), "predict", "--hardware", "a100-80gb", "--workload",
                        "llama-2-7b", "--batch", "0"], capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 2 and r.stdout == "" and "batch" in r.stderr
    assert "Traceback" not in r.stderr


# --------------------------------------------------------------------------- bench
def test_bench_has_a_case_per_family():
    """`perfmodel bench --all-targets` covers every family; each case's preset holds its
    workload and evaluates (the timing itself is a benchmark, not a test)."""
    from perfmodel._bench import bench_cases, case_ops
    from perfmodel.hardware._registry import _FAMILIES

    cases = bench_cases()
    assert len(cases) == len(_FAMILIES)
    for case in cases:
        hw = pm.hardware.preset(case["hardware"])
        ops = case_ops(case)
        hw.check(ops)
        assert math.isfinite(float(pm.evaluate(hw, ops).latency))


def test_bench_unknown_target(capsys):
    rc, out, err = run_cli(capsys, "bench", "--target", "nope", "--designs", "10")
    assert rc == 2 and "--target" in err


@pytest.mark.parametrize("name", pm.hardware.list_presets())
def test_predict_every_preset(capsys, name):
    """`perfmodel predict --json` works for every hardware preset (GPT-2 decode; the
    optical presets also run ResNet-50, the workload their papers evaluate)."""
    rc, out, err = run_cli(capsys, "predict", "--hardware", name, "--workload", "gpt2",
                           "--phase", "decode", "--batch", "1", "--context", "512", "--json")
    assert rc == 0, err
    d = json.loads(out)
    assert d["latency_s"] > 0 and d["energy_j"] > 0 and d["breakdown"]

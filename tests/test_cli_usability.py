"""Rough edges a new user hit (issue 13): whole-number shape flags, flags a phase does
not use, `list` columns, and breakdowns that say what is per instance and what is
summed, and which rows of a request are prefill or decode."""

import json
import pathlib
import re

import pytest
from conftest import run_cli

import perfmodel as pm
from perfmodel._cli import PHASE_FLAGS, SHAPE_DEFAULTS
from perfmodel._report import row_phases

LLM = ["--hardware", "a100-80gb", "--workload", "llama-2-7b"]
CNN = ["--hardware", "neoverse-n1", "--workload", "resnet-50"]




def _error_line(capsys, *args) -> str:
    rc, out, err = run_cli(capsys, "predict", *args)
    assert rc == 2 and out == "" and len(err.splitlines()) == 1, (rc, out, err)
    assert err.startswith("perfmodel: error: ") and "Traceback" not in err
    return err.strip()


# ------------------------------------------------------------------- whole numbers
def test_fractional_batch_is_refused(capsys):
    err = _error_line(capsys, *LLM, "--batch", "2.5")
    assert err == "perfmodel: error: --batch = 2.5 is invalid; it must be a positive integer (> 0)."


@pytest.mark.parametrize("args, flag, words", [
    (LLM + ["--phase", "prefill", "--prompt", "100.5"], "--prompt", "positive integer"),
    (LLM + ["--phase", "prefill", "--prompt", "0"], "--prompt", "positive integer"),
    (LLM + ["--phase", "decode", "--context", "0.5"], "--context", "non-negative integer"),
    (LLM + ["--phase", "decode", "--context", "-2"], "--context", "non-negative integer"),
    (LLM + ["--phase", "request", "--generate", "7.25"], "--generate", "positive integer"),
    (CNN + ["--batch", "1.5"], "--batch", "positive integer"),
])
def test_shape_flags_must_be_whole(capsys, args, flag, words):
    err = _error_line(capsys, *args)
    assert f"{flag} = " in err and words in err, err


def test_context_zero_and_integral_floats_are_accepted(capsys):
    rc, out, err = run_cli(capsys, "predict", *LLM, "--context", "0", "--batch", "2.0",
                           "--json")
    assert rc == 0, err
    assert json.loads(out)["tokens_per_s"] > 0


# ------------------------------------------------------------------- unused flags
@pytest.mark.parametrize("phase, flag", [
    ("decode", "prompt"), ("decode", "generate"), ("prefill", "context"),
    ("prefill", "generate"), ("request", "context"), (None, "prompt"),
])
def test_flag_the_phase_does_not_use_is_an_error(capsys, phase, flag):
    args = LLM + (["--phase", phase] if phase else []) + [f"--{flag}", "64"]
    err = _error_line(capsys, *args)
    shown = phase or "decode"
    assert f"--{flag} is not used by --phase {shown}" in err, err
    for used in PHASE_FLAGS[shown]:
        assert f"--{used}" in err, err


def test_cnn_names_the_flags_it_uses(capsys):
    err = _error_line(capsys, *CNN, "--context", "128")
    assert "--context is not used" in err and "resnet-50" in err and "--batch" in err, err


@pytest.mark.parametrize("phase, given", [
    ("decode", {"batch": 1, "context": 1024}),
    ("prefill", {"batch": 1, "prompt": 512}),
    ("request", {"batch": 1, "prompt": 512, "generate": 128}),
])
def test_unset_flags_keep_the_old_defaults(capsys, phase, given):
    assert all(SHAPE_DEFAULTS[k] == v for k, v in given.items())
    rc, out, err = run_cli(capsys, "predict", *LLM, "--phase", phase, "--json")
    assert rc == 0, err
    implicit = json.loads(out)["latency_s"]
    explicit = [a for k, v in given.items() for a in (f"--{k}", v)]
    rc, out, err = run_cli(capsys, "predict", *LLM, "--phase", phase, *explicit, "--json")
    assert rc == 0, err
    assert json.loads(out)["latency_s"] == pytest.approx(implicit, rel=1e-7)


# ------------------------------------------------------------------- list
def test_list_hardware_columns_do_not_run_together(capsys):
    rc, out, err = run_cli(capsys, "list", "hardware")
    assert rc == 0, err
    from perfmodel.hardware._registry import preset_family

    kinds = set()
    lines = out.splitlines()
    assert len(lines) == len(pm.hardware.list_presets())
    for line in lines:
        cols = re.split(r"\s{2,}", line.strip(), maxsplit=3)
        assert len(cols) >= 3, line
        name, family, kind = cols[:3]
        assert family == preset_family(name), line
        assert kind == type(pm.hardware.preset(name)).__name__, line
        kinds.add(kind)
    assert {"EagerFramework", "OpticalAccelerator"} <= kinds
    # columns start at the same offset on every line
    starts = {tuple(m.start() for m in re.finditer(r"(?<=\s\s)\S+", line))[:2]
              for line in lines}
    assert len(starts) == 1, starts

    rc, out, err = run_cli(capsys, "list", "hardware", "--json")
    items = json.loads(out)
    assert all({"name", "kind", "title", "family"} <= set(i) for i in items)


# ------------------------------------------------------------------- breakdown
def _report(phase="decode", hw="a100-80gb"):
    wl = pm.workloads.preset("llama-2-7b")
    ops = {"decode": lambda: wl.decode(4.0, 256.0), "prefill": lambda: wl.prefill(2.0, 64.0),
           "request": lambda: wl.request(2.0, 64.0, 16.0)}[phase]()
    return ops, pm.evaluate(pm.hardware.preset(hw), ops)


@pytest.mark.parametrize("hw", ["a100-80gb", "neupims", "t4-pytorch-eager"])
def test_breakdown_counts_and_per_instance_times(hw):
    """Every kind of report (single unit, System, EagerFramework) says how many instances
    each row's summed time covers."""
    ops, rep = _report(hw=hw)
    rows = rep.breakdown()
    old = {"name", "kind", "time_s", "energy_j", "bound", "time_terms_s"}
    for i, row in enumerate(rows):
        assert old <= set(row)                      # JSON keys kept
        assert row["phase"] == "decode"
        assert row["count"] == pytest.approx(float(ops.count[i]))
        assert row["time_per_instance_s"] * row["count"] == pytest.approx(row["time_s"])
    assert sum(r["time_s"] for r in rows) == pytest.approx(float(rep.latency), rel=1e-5)
    d = rep.to_dict()
    assert d["breakdown"] == rows


def test_request_rows_say_prefill_or_decode():
    ops, rep = _report("request")
    phases = [r["phase"] for r in rep.breakdown()]
    n_pre = len(pm.workloads.preset("llama-2-7b").prefill(2.0, 64.0).names)
    assert phases == ["prefill"] * n_pre + ["decode"] * (len(phases) - n_pre)


@pytest.mark.parametrize("name", ["gpt2", "llama-2-7b", "mixtral-8x7b", "deepseek-v2-lite",
                                  "gpt-oss-20b", "gemma-3-1b", "jamba-v0.1", "mamba-2.8b",
                                  "bitnet-b1.58-3b"])
def test_row_phases_match_the_request_structure(name):
    """`row_phases` derives a request's prefill/decode split from row names (prefill's
    names are distinct; decode starts at the first repeat). One preset per kind of
    architecture (dense, MoE, MLA, sliding window, hybrid SSM, SSM, ternary)."""
    wl = pm.workloads.preset(name)
    pre = wl.prefill(2.0, 16.0)
    req = wl.request(2.0, 16.0, 8.0)
    assert req.names[:len(pre.names)] == pre.names
    assert row_phases(req.names, req.phase) == (
        ("prefill",) * len(pre.names) + ("decode",) * (len(req.names) - len(pre.names)))


def test_predict_request_table_shows_phase_column(capsys):
    rc, out, err = run_cli(capsys, "predict", *LLM, "--phase", "request", "--batch", 2,
                           "--prompt", 64, "--generate", 16)
    assert rc == 0, err
    lines = out.splitlines()
    head = next(i for i, l in enumerate(lines) if l.split()[:2] == ["op", "phase"])
    assert "time (all)" in lines[head] and "per instance" in lines[head]
    phases = [l.split()[1] for l in lines[head + 1:] if l.startswith("  ") and
              not l.lstrip().startswith("(")]
    assert phases[0] == "prefill" and phases[-1] == "decode"
    assert set(phases) == {"prefill", "decode"}


# ------------------------------------------------------------------- warnings
def test_cli_prints_plausibility_warning_as_one_line(capsys, tmp_path):
    text = (pathlib.Path(pm.hardware.__file__).parent / "presets" / "a100-80gb.toml"
            ).read_text().replace("bandwidth_GB_s = 2039.0", "bandwidth_GB_s = 3.35")
    spec = tmp_path / "slow_gpu.toml"
    spec.write_text(text)
    rc, out, err = run_cli(capsys, "predict", "--hardware", spec, "--workload", "gpt2",
                           "--json")
    assert rc == 0 and json.loads(out)["latency_s"] > 0
    assert err.startswith("perfmodel: warning: slow_gpu.toml: memory.dram.bandwidth_GB_s = "
                          "3.35 is outside the plausible range"), err
    assert len(err.splitlines()) == 1, err

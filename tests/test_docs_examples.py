"""Every example in README.md and docs/**/*.md runs.

Each ```bash block is split into commands (``\\`` continuations joined, ``#`` comments
dropped); a ``perfmodel ...`` command runs through the CLI's `main()` in-process and must
exit 0 (with ``--json``, print one JSON object or list). Each ```python block runs with
`exec` in a fresh namespace. Each ```toml block that is a whole spec (it has
``schema_version``) must load with `perfmodel.hardware.from_spec` (a co-design problem,
with ``[dims]``, with `perfmodel.opt.load_problem`). All of them run in a
temporary folder that holds the two files the README's examples name: ``my_gpu.toml`` (a
copy of the a100-80gb preset) and ``config.json`` (Llama-2-7B's Hugging Face config).

Nothing is shrunk: the README's 100,000-design sweep runs as written (~10 s).
Commands that cannot run here are listed in `SKIP` with the reason and the test that
covers them instead; any other command is an error, so a new example is either run or
listed.

Also here: no reference to files outside the repository or to removed files.
"""

from __future__ import annotations

import json
import pathlib
import re
import shlex
import shutil
import sys

import pytest

import perfmodel as pm
from perfmodel._cli import main

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md"] + sorted((REPO / "docs").rglob("*.md"))

#: command prefix -> why it is not run here, and which test covers it instead
SKIP = {
    "make demo": "creates .venv and pip-installs; the command it runs, `perfmodel demo`, "
                 "is tests/test_demo.py",
    "make test": "is the whole suite",
    "perfmodel reproduce": "evaluates every claim (~80 s); each claim is checked in "
                           "tests/test_fit.py::test_published_claims and the command's JSON "
                           "in tests/test_cli.py::test_reproduce_json",
    "perfmodel calibrate": "the fit takes ~15 s; the fit is tests/test_fit.py (fit_a100) "
                           "and the command's output test_calibrate_command_prints_the_fit "
                           "below (fit stubbed)",
    "perfmodel validate": "evaluates 272 serving rows (~90 s); the rebuilding of rows and "
                          "the summary are tests/test_fit.py::test_validate_rebuilds_"
                          "serving_rows",
    "perfmodel bench codesign": "runs every method on five problems (~10 min); the command "
                                "and its JSON rows are tests/test_opt.py::test_bench_codesign"
                                "_json on a small problem",
    "perfmodel measure": "microbenchmarks this machine (~2-4 min); the harness on small "
                         "shapes and its table through calibrate are tests/test_measure.py",
    "perfmodel bench": "a timing run (minutes); every benchmark case is evaluated in "
                       "tests/test_cli.py::test_bench_has_a_case_per_family",
    "perfmodel predict --hardware runs/cim/best.toml": "reads the spec the optimize "
                                                       "example above writes (each command "
                                                       "runs in its own folder here); the "
                                                       "round trip is tests/test_opt.py::"
                                                       "test_written_spec_round_trips_through"
                                                       "_predict",
    "perfmodel optimize --space cim --starts 2 --steps 25 --out runs/cim --resume":
        "resumes the run above; resuming is tests/test_opt.py::test_resume_after_sigkill"
        "_matches_an_uninterrupted_run",
    ".venv/bin/jupyter execute": "executes a notebook (minutes); tests/test_notebooks.py "
                                 "executes every notebook",
    ".venv/bin/pip install jupyterlab": "installs from the network and starts a server; the "
                                        "notebooks run in tests/test_notebooks.py",
}


def _blocks():
    """(label, language, code) of every fenced bash/python/toml block."""
    fence = re.compile(r"^```(bash|python|toml)[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
    for path in DOCS:
        text = path.read_text()
        for m in fence.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            yield f"{path.relative_to(REPO)}:{line}", m.group(1), m.group(2)


def _commands(code: str):
    """Shell commands of a bash block: continuations joined, comments and blanks gone."""
    for line in code.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words:
            yield " ".join(words), words


BLOCKS = list(_blocks())
COMMANDS = [(f"{label} {cmd}", cmd, words) for label, lang, code in BLOCKS if lang == "bash"
            for cmd, words in _commands(code)]
PYTHON = [(label, code) for label, lang, code in BLOCKS if lang == "python"]
SPECS = [(label, code) for label, lang, code in BLOCKS
         if lang == "toml" and re.search(r"(?m)^schema_version\s*=", code)]


@pytest.fixture
def docs_cwd(tmp_path, monkeypatch):
    """A folder with the files the examples name, as the working directory."""
    shutil.copy(REPO / "hardware" / "presets" / "a100-80gb.toml", tmp_path / "my_gpu.toml")
    cfg = json.loads((REPO / "workloads" / "presets" / "llama-2-7b.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(cfg["config"]))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_docs_have_examples():
    assert any(lang == "python" for _, lang, _ in BLOCKS)
    assert sum(c.startswith("perfmodel ") for _, c, _ in COMMANDS) >= 4
    assert SPECS


@pytest.mark.parametrize("label, cmd, words", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_bash_example(label, cmd, words, docs_cwd, capsys):
    skip = next((reason for prefix, reason in SKIP.items() if cmd.startswith(prefix)), None)
    if skip:
        pytest.skip(f"{cmd}: {skip}")
    assert words[0] == "perfmodel", (
        f"{label}: only `perfmodel` commands run here; add `{cmd}` to SKIP with the reason "
        "and the test that covers it")
    capsys.readouterr()
    rc = main(words[1:])
    out, err = capsys.readouterr()
    assert rc == 0, f"{label}: `{cmd}` exited {rc}: {err}"
    assert "error" not in err and "warning" not in err, err
    if "--json" in words:
        json.loads(out)
    else:
        assert out.strip(), cmd


@pytest.mark.parametrize("label, code", PYTHON, ids=[p[0] for p in PYTHON])
def test_python_example(label, code, docs_cwd):
    exec(compile(code, label, "exec"), {"__name__": "__docs__"})


@pytest.mark.parametrize("label, code", SPECS, ids=[s[0] for s in SPECS])
def test_toml_spec_example(label, code, tmp_path):
    """A hardware spec loads; a co-design problem (it has ``[dims]``) loads as one."""
    if re.search(r"(?m)^\[dims\]", code):
        (tmp_path / "problem.toml").write_text(code)
        assert pm.opt.load_problem(tmp_path / "problem.toml").space.dims
        return
    hw = pm.hardware.from_spec(tomllib.loads(code), label)
    assert hw.name


def test_every_skip_is_used():
    """A SKIP entry whose example left the docs goes too."""
    unused = [p for p in SKIP if not any(cmd.startswith(p) for _, cmd, _ in COMMANDS)]
    assert not unused, unused


def test_calibrate_command_prints_the_fit(capsys, monkeypatch):
    """`perfmodel calibrate`'s table, on a stubbed fit (the fit itself: tests/test_fit.py)."""
    summary = {"data": "fit/data/a100_kernels.csv",
               "parameters": {"compute_efficiency": {"value": 0.93, "rel_stderr": 0.02}},
               "mape_percent": {"all": 5.2, "gemm": 3.1, "layer": 6.0}, "rows": []}
    monkeypatch.setattr(pm.fit, "calibrate", lambda: summary)
    assert main(["calibrate"]) == 0
    out = capsys.readouterr().out
    assert "compute_efficiency" in out and "MAPE: all 5.2%" in out
    assert main(["calibrate", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == summary


# ------------------------------------------------------------------- stale references
#: text that points outside the repository or at files that no longer exist
STALE = ("../shared", "/work/", "gpu_efficiency.py", "perfmodel[bench]")
#: known, with the owner asked to fix them (delete an entry when its file is clean)
PENDING: dict[str, str] = {}
TEXT = {".py", ".md", ".toml", ".csv", ".json", ".ipynb", ".cfg", ".txt", ".yml", ".yaml"}
SKIP_DIRS = {".git", ".venv", "build", "dist", "out", ".pytest_cache", ".hypothesis",
             "__pycache__", ".ipynb_checkpoints"}


def _text_files():
    for path in REPO.rglob("*"):
        rel = path.relative_to(REPO)
        if any(p in SKIP_DIRS or p.endswith(".egg-info") for p in rel.parts[:-1]):
            continue
        if path.is_file() and (path.suffix in TEXT or path.name == "Makefile"):
            yield rel.as_posix(), path


def test_no_stale_references():
    found = {}
    for rel, path in _text_files():
        if rel == "tests/test_docs_examples.py":
            continue
        text = path.read_text(errors="replace")
        hits = [s for s in STALE if s in text]
        if hits:
            found[rel] = hits
    unexpected = {f: h for f, h in found.items() if not set(h) <= {PENDING.get(f)}}
    assert not unexpected, unexpected
    fixed = [f for f in PENDING if f not in found]
    assert not fixed, f"clean now, remove from PENDING: {fixed}"

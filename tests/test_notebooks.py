"""Execute every notebook in ``notebooks/`` end to end; a cell that raises fails the test.

Kernels are the kernelspec ``python3`` resolved from the running interpreter's
environment (``jupyter_client`` launches it with ``sys.executable``), run in the notebooks
folder with ``MPLBACKEND=Agg`` and a 300 s limit per cell. `test_kernel_is_this_python`
checks that the kernel really is this interpreter (a stray user-level ``python3``
kernelspec would otherwise run the notebooks against another environment).
"""

from __future__ import annotations

import os
import pathlib
import sys

import nbformat
import pytest
from nbclient import NotebookClient

NB_DIR = pathlib.Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 300
KERNEL = "python3"


@pytest.fixture
def kernel_env(monkeypatch):
    """Environment the kernel inherits: headless matplotlib, and this environment's
    kernelspecs searched before user-level ones."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    env_share = os.path.join(sys.prefix, "share", "jupyter")
    rest = os.environ.get("JUPYTER_PATH")
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join([env_share] + ([rest] if rest else [])))


def execute(nb) -> None:
    NotebookClient(nb, kernel_name=KERNEL, timeout=CELL_TIMEOUT_S,
                   resources={"metadata": {"path": str(NB_DIR)}}).execute()


def test_notebooks_exist():
    assert NOTEBOOKS, f"no notebooks found in {NB_DIR}"


@pytest.mark.slow
def test_kernel_is_this_python(kernel_env):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import os, sys; print(sys.executable); print(sys.prefix); print(os.getcwd())")])
    execute(nb)
    lines = "".join(o.get("text", "") for o in nb.cells[0].outputs).split()
    assert lines[:2] == [sys.executable, sys.prefix], (
        f"kernel {KERNEL!r} ran {lines[:2]}, not this interpreter "
        f"{[sys.executable, sys.prefix]}")
    assert pathlib.Path(lines[2]).resolve() == NB_DIR


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, kernel_env):
    nb = nbformat.read(path, as_version=4)
    execute(nb)  # raises nbclient.exceptions.CellExecutionError naming the failing cell
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: {errors[0]['ename']}: {errors[0]['evalue']}"

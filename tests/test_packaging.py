"""Packaging: one `perfmodel.*` namespace from the repo's top-level folders, and a wheel
that carries its data files and works outside the source tree."""

import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SUBPACKAGES = {"hardware": "hardware", "workloads": "workloads", "fit": "fit", "opt": "opt"}

pytestmark = pytest.mark.slow


def test_namespace_editable():
    import importlib

    import perfmodel

    assert pathlib.Path(perfmodel.__file__).resolve().parent == REPO / "perfmodel"
    for sub, folder in SUBPACKAGES.items():
        mod = importlib.import_module(f"perfmodel.{sub}")
        assert getattr(perfmodel, sub) is mod
        assert pathlib.Path(mod.__file__).resolve() == REPO / folder / "__init__.py", mod
    from perfmodel import hardware

    assert pathlib.Path(hardware.__file__).resolve().is_relative_to(REPO / "hardware")


def _data_files():
    """Wheel paths of the package data the library reads at run time."""
    files = []
    for folder, pattern in (("hardware", "presets/*.toml"), ("workloads", "presets/*.json"),
                            ("fit", "data/*.csv"), ("fit", "data/*.json")):
        files += [f"perfmodel/{folder}/{p.relative_to(REPO / folder).as_posix()}"
                  for p in sorted((REPO / folder).glob(pattern))]
    return files


def _ignore(directory, names):
    """The working tree, less what .gitignore lists (venv, build outputs, caches)."""
    skip = {".git", ".venv", "build", "dist", "out", "__pycache__", ".pytest_cache",
            ".hypothesis", ".ipynb_checkpoints"}
    return [n for n in names if n in skip or n.endswith(".egg-info")]


def test_wheel_installs_and_runs(tmp_path):
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1",
               JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    env.pop("PYTHONPATH", None)
    # Build from a copy so the build never writes into the repo (build/, *.egg-info)
    # and parallel test runs do not share a build folder.
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=_ignore)
    dist = tmp_path / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", str(src), "--no-deps",
                        "--no-build-isolation", "-w", str(dist)],
                       capture_output=True, text=True, timeout=180, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    # setuptools has nothing to warn about (license metadata, data folders as packages):
    # its multi-line warnings were ~200 of `make demo`'s first lines
    build_log = r.stdout + r.stderr
    noisy = [line for line in build_log.splitlines()
             if "SetuptoolsDeprecationWarning" in line or "_Warning:" in line
             or "absent from the `packages`" in line]
    assert not noisy, "\n".join(noisy)
    wheels = list(dist.glob("perfmodel-*.whl"))
    assert len(wheels) == 1, wheels
    wheel = wheels[0]

    expected = _data_files()
    assert any(f.endswith(".toml") for f in expected)
    assert any(f.endswith(".json") for f in expected)
    assert any(f.endswith(".csv") for f in expected)
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points = next(z.read(n).decode() for n in names
                            if n.endswith(".dist-info/entry_points.txt"))
    missing = [f for f in expected if f not in names]
    assert not missing, f"data files missing from the wheel: {missing}"
    for sub in SUBPACKAGES:
        assert f"perfmodel/{sub}/__init__.py" in names
    assert not any(n.startswith(("tests/", "hardware/", "fit/", "notebooks/")) for n in names)
    assert "perfmodel = perfmodel._cli:main" in entry_points

    # A fresh venv that sees the dev venv's dependencies but not its editable perfmodel:
    # a directory added by a .pth file does not get its own .pth files executed.
    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", str(fresh)], check=True, timeout=120,
                   env=env, capture_output=True)
    fresh_py = fresh / "bin" / "python"
    fresh_site = pathlib.Path(subprocess.run(
        [str(fresh_py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True, env=env).stdout.strip())
    dev_site = sysconfig.get_paths()["purelib"]
    (fresh_site / "deps.pth").write_text(dev_site + "\n")
    r = subprocess.run([str(fresh / "bin" / "pip"), "install", "--no-deps", "--no-index",
                        str(wheel)], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stdout + r.stderr

    script = textwrap.dedent(f"""
        import math, pathlib, sys
        fresh = pathlib.Path({str(fresh)!r}).resolve()
        import perfmodel as pm
        import perfmodel.hardware, perfmodel.workloads, perfmodel.fit, perfmodel.opt
        for mod in (pm, pm.hardware, pm.workloads, pm.fit, pm.opt):
            p = pathlib.Path(mod.__file__).resolve()
            assert p.is_relative_to(fresh), (mod.__name__, p)
        hw = pm.hardware.preset("a100-80gb")
        wl = pm.workloads.preset("llama-2-7b")
        rep = pm.evaluate(hw, wl.decode(8.0, 2048.0))
        assert math.isfinite(float(rep.latency)) and float(rep.latency) > 0
        assert math.isfinite(float(rep.energy)) and float(rep.energy) > 0
        root = pathlib.Path(pm.__file__).resolve().parent
        for rel in {[f.removeprefix("perfmodel/") for f in expected]!r}:
            assert (root / rel).is_file(), rel
        assert len(pm.hardware.list_presets()) == {len(list((REPO / "hardware" /
                                                              "presets").glob("*.toml")))}
        assert pm.fit.load_claims()
        print("OK", float(rep.latency))
    """)
    r = subprocess.run([str(fresh_py), "-c", script], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("OK"), r.stdout

    r = subprocess.run([str(fresh / "bin" / "perfmodel"), "list", "hardware"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert "a100-80gb" in r.stdout.split() and "h100-sxm" in r.stdout.split()

import os

import jax
import pytest

# Catch accidental broadcasting in the model (design guide, section 13).
jax.config.update("jax_numpy_rank_promotion", "raise")


def pytest_configure(config):
    """Share compiled XLA executables between the xdist workers and between tests that
    compile the same computation (fresh jitted lambdas, eager primitives of equal shapes):
    JAX's persistent compilation cache, under pytest's cache directory. Set
    PERFMODEL_TEST_JAX_CACHE=0 to compile everything afresh."""
    cache = getattr(config, "cache", None)
    if cache is None or os.environ.get("PERFMODEL_TEST_JAX_CACHE", "1") == "0":
        return
    jax.config.update("jax_compilation_cache_dir", str(cache.mkdir("jax-compilation")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def run_cli(capsys, *args):
    """``(exit code, stdout, stderr)`` of ``perfmodel ARGS`` run in-process."""
    from perfmodel._cli import main

    capsys.readouterr()
    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="session")
def a100():
    import perfmodel as pm

    return pm.hardware.preset("a100-80gb")


@pytest.fixture(scope="session")
def llama7b():
    import perfmodel as pm

    return pm.workloads.preset("llama-2-7b")


@pytest.fixture(scope="session")
def decode_ops(llama7b):
    return llama7b.decode(8.0, 2048.0)

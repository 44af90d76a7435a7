import jax
import pytest

# Catch accidental broadcasting in the model (design guide, section 13).
jax.config.update("jax_numpy_rank_promotion", "raise")


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

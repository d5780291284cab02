"""Test-wide settings: float64 and strict dtype promotion, enabled once (diffrax style)."""

import jax
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")


def _has_accelerator() -> bool:
    return any(d.platform in ("gpu", "tpu") for d in jax.devices())


def pytest_collection_modifyitems(config, items):
    if _has_accelerator():
        return
    skip_gpu = pytest.mark.skip(reason="needs a GPU/TPU; none visible to JAX")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def key():
    return jax.random.key(0)


def raises_naming(argument: str):
    """Expect a clear error that names ``argument``.

    Under pytest the jaxtyping import hook checks shapes before hjax's own validation
    does, so a shape error surfaces as ``TypeCheckError``; value errors (eps < 0, t <= 0,
    non-PD A) and plain use without the hook raise hjax's ``ValueError``.
    """
    import jaxtyping

    return pytest.raises(
        (ValueError, jaxtyping.TypeCheckError), match=rf"(`{argument}`|'{argument}')"
    )


def raises_at_run_time(argument: str):
    """Expect the run-time error of an ``eqx.error_if`` check that names ``argument``.

    Under jit/vmap hjax checks traced values with ``eqx.error_if``: eagerly under vmap it
    raises ``EquinoxRuntimeError`` (a ``RuntimeError``); from a compiled call XLA wraps it
    in ``JaxRuntimeError`` (a ``RuntimeError``) or, depending on the call path, a
    ``ValueError`` ("INTERNAL: CpuCallback error ..."). The message always carries hjax's
    text, which names the argument in backticks.
    """
    return pytest.raises((RuntimeError, ValueError), match=rf"`{argument}`")

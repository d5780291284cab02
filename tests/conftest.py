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


def run_two_processes(mode: str, tmp_path, *extra: str):
    """Run ``tests/_distributed_script.py MODE`` as a 2-process ``jax.distributed`` job on
    this machine; return the script's module and each process's saved ``.npz``."""
    import importlib.util
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np

    script = Path(__file__).with_name("_distributed_script.py")
    spec = importlib.util.spec_from_file_location("_distributed_script", script)
    helper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helper)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    env = {**os.environ, "PYTHONPATH": str(script.parents[1])}
    env.pop("XLA_FLAGS", None)
    outs = [tmp_path / f"{mode}-p{i}.npz" for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), mode, port, str(i), str(outs[i]), *extra],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for i in range(2)
    ]
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out.decode()[-3000:]
    return helper, [np.load(o) for o in outs]

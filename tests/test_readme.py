"""The README's tour runs as written, and its claims hold."""

import re
from pathlib import Path

import jax.numpy as jnp
import numpy as np

README = Path(__file__).parent.parent / "README.md"


def test_readme_tour_runs_and_its_identity_holds():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python tour"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    x, u, u0, f, us = (namespace[k] for k in ("x", "u", "u0", "f", "us"))
    np.testing.assert_allclose(u, jnp.sum(x**2, -1) / 2 - f, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(us[0], u0)
    assert us.shape == (32, x.shape[0])

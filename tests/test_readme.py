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
    sweep, rmse = namespace["sweep"], namespace["rmse"]
    assert rmse.shape == (3, 1, 3)
    assert float(rmse.max()) < 0.5 * float(jnp.std(namespace["y_train"]))  # it trained
    assert sweep.layer(seed=0, width=256).W.shape == (256, 2)


def test_readme_module_table_names_real_modules():
    import importlib

    names = set(re.findall(r"^\| `(hjax\.[a-z_.]+)`", README.read_text(), flags=re.M))
    names |= set(re.findall(r"^\| `hjax\.[a-z_.]+`, `(hjax\.[a-z_.]+)`", README.read_text(), re.M))
    assert len(names) >= 15
    for name in sorted(names):
        importlib.import_module(name)


def test_all_lists_exactly_the_public_names():
    import types

    import hjax

    public = {
        n
        for n, v in vars(hjax).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType)
    }
    assert set(hjax.__all__) == public | {"__version__"}
    assert len(hjax.__all__) == len(set(hjax.__all__))

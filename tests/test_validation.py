"""Validation at the API boundary (hjax._validate): bad data never becomes a silent NaN.

Policy (THEORY §0): points, atoms, initial values and weights (``x``, ``y``, ``g``, ``W``,
``Q``, ``K``, ``V``, ...) must be finite; log-weights and biases (``log_w``, ``b``) may be
``-inf`` (a masked atom, the semiring zero) but not NaN or ``+inf``; raw logits (``z`` of
lse/gibbs, ``f`` of quadratic_shift) may be ``±inf`` but not NaN. Concrete values fail
eagerly with a ``ValueError`` naming the argument; traced ones (jit, vmap) at run time with
an ``eqx.error_if`` message naming it. Empty atom sets and complex inputs are rejected.
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import raises_at_run_time, raises_naming

from hjax.attention import (
    attention_sink_bound,
    attention_weights,
    dot_product_attention,
    kv_init,
    kv_update,
    l2_attention,
    l2_attention_weights,
    l2_log_partition,
)
from hjax.feynman_kac import feynman_kac
from hjax.hopf_cole import (
    heat_normalization,
    hopf_cole,
    hopf_cole_grad,
    hopf_cole_hessian,
    hopf_lax,
    transport_cost,
)
from hjax.layers import (
    affine_pullback,
    heat_kernel_weights,
    hj_to_lse,
    lse_layer,
    lse_layer_backward,
    lse_layer_gibbs,
    lse_layer_grad,
    lse_layer_hessian,
    lse_layer_hessian_bound,
    lse_to_hj,
    quadratic_shift,
)
from hjax.semiring import gibbs, lse, maxplus_matmul, softplus_eps, tropical_add, tropical_mul
from hjax.sweep import hopf_cole_sweep

_rng = np.random.default_rng(0)
D, N, T, EPS = 2, 5, 0.7, 0.3
ARRAYS = {
    "x": _rng.standard_normal((3, D)),
    "y": _rng.standard_normal((N, D)),
    "g": _rng.standard_normal(N),
    "log_w": 0.3 * _rng.standard_normal(N),
    "W": _rng.standard_normal((N, D)),
    "b": _rng.standard_normal(N),
    "z": _rng.standard_normal((3, N)),
    "f": _rng.standard_normal(3),
    "cotangent": _rng.standard_normal(3),
    "M": _rng.standard_normal((D, D)),
    "c": _rng.standard_normal(D),
    "Q": _rng.standard_normal((3, D)),
    "K": _rng.standard_normal((N, D)),
    "V": _rng.standard_normal((N, 2)),
    "A": _rng.standard_normal((3, N)),  # maxplus_matmul's operands (not a metric)
    "B": _rng.standard_normal((N, 2)),
}

# Entry policies: which non-finite values each argument rejects.
FINITE, MASKED, LOGITS = "finite", "masked", "logits"
REJECTED = {FINITE: (np.nan, np.inf, -np.inf), MASKED: (np.nan, np.inf), LOGITS: (np.nan,)}
ALLOWED = {FINITE: (), MASKED: (-np.inf,), LOGITS: (np.inf, -np.inf)}

# name: (call on a dict of arrays, {checked argument: policy}, in the jit/vmap tests?)
CASES = {
    "hopf_cole": (
        lambda a: hopf_cole(a["x"], a["y"], a["g"], T, EPS, log_w=a["log_w"]),
        {"x": FINITE, "y": FINITE, "g": FINITE, "log_w": MASKED},
        True,
    ),
    "hopf_lax": (
        lambda a: hopf_lax(a["x"], a["y"], a["g"], T),
        {"x": FINITE, "y": FINITE, "g": FINITE},
        True,
    ),
    "hopf_cole_grad": (
        lambda a: hopf_cole_grad(a["x"], a["y"], a["g"], T, EPS, log_w=a["log_w"]),
        {"x": FINITE, "y": FINITE, "g": FINITE, "log_w": MASKED},
        True,
    ),
    "hopf_cole_hessian": (
        lambda a: hopf_cole_hessian(a["x"], a["y"], a["g"], T, EPS, log_w=a["log_w"]),
        {"x": FINITE, "y": FINITE, "g": FINITE, "log_w": MASKED},
        True,
    ),
    "transport_cost": (
        lambda a: transport_cost(a["x"], a["y"], T),
        {"x": FINITE, "y": FINITE},
        True,
    ),
    "hj_to_lse": (
        lambda a: hj_to_lse(a["y"], a["g"], T, log_w=a["log_w"], eps=EPS),
        {"y": FINITE, "g": FINITE, "log_w": MASKED},
        True,
    ),
    "lse_to_hj": (lambda a: lse_to_hj(a["W"], a["b"], T), {"W": FINITE, "b": MASKED}, True),
    "hopf_cole_sweep": (
        lambda a: hopf_cole_sweep(
            a["x"], a["y"], a["g"], T, jnp.array([0.0, EPS]), [2, N], log_w=a["log_w"]
        ),
        {"x": FINITE, "y": FINITE, "g": FINITE, "log_w": MASKED},
        True,
    ),
    "lse_layer": (
        lambda a: lse_layer(a["x"], a["W"], a["b"], EPS),
        {"x": FINITE, "W": FINITE, "b": MASKED},
        True,
    ),
    "lse_layer_gibbs": (
        lambda a: lse_layer_gibbs(a["x"], a["W"], a["b"], EPS),
        {"x": FINITE, "W": FINITE, "b": MASKED},
        True,
    ),
    "lse_layer_grad": (
        lambda a: lse_layer_grad(a["x"], a["W"], a["b"], EPS),
        {"x": FINITE, "W": FINITE, "b": MASKED},
        True,
    ),
    "lse_layer_hessian": (
        lambda a: lse_layer_hessian(a["x"], a["W"], a["b"], EPS),
        {"x": FINITE, "W": FINITE, "b": MASKED},
        True,
    ),
    "lse_layer_backward": (
        lambda a: lse_layer_backward(a["x"], a["W"], a["b"], EPS, a["cotangent"]),
        {"x": FINITE, "W": FINITE, "b": MASKED, "cotangent": FINITE},
        True,
    ),
    "lse": (lambda a: lse(a["z"], EPS, log_w=a["log_w"]), {"z": LOGITS, "log_w": MASKED}, True),
    "gibbs": (
        lambda a: gibbs(a["z"], EPS, log_w=a["log_w"]),
        {"z": LOGITS, "log_w": MASKED},
        True,
    ),
    # Eager checks only (the same helpers as above).
    "heat_kernel_weights": (
        lambda a: heat_kernel_weights(a["x"], a["y"], a["g"], T, EPS, log_w=a["log_w"]),
        {"x": FINITE, "y": FINITE, "g": FINITE, "log_w": MASKED},
        False,
    ),
    "lse_layer_hessian_bound": (
        lambda a: lse_layer_hessian_bound(a["W"], EPS),
        {"W": FINITE},
        False,
    ),
    "quadratic_shift": (
        lambda a: quadratic_shift(a["x"], a["f"], T),
        {"x": FINITE, "f": LOGITS},
        False,
    ),
    "affine_pullback": (
        lambda a: affine_pullback(a["W"], a["b"], a["M"], a["c"]),
        {"W": FINITE, "b": MASKED, "M": FINITE, "c": FINITE},
        False,
    ),
    "feynman_kac": (
        lambda a: feynman_kac(jnp.sum, a["x"], T, EPS, jax.random.key(0), 16),
        {"x": FINITE},
        False,
    ),
    "dot_product_attention": (
        lambda a: dot_product_attention(a["Q"], a["K"], a["V"], EPS),
        {"Q": FINITE, "K": FINITE, "V": FINITE},
        False,
    ),
    "l2_attention": (
        lambda a: l2_attention(a["Q"], a["K"], a["V"], T, EPS),
        {"Q": FINITE, "K": FINITE, "V": FINITE},
        False,
    ),
    "l2_log_partition": (
        lambda a: l2_log_partition(a["Q"], a["K"], T, EPS),
        {"Q": FINITE, "K": FINITE},
        False,
    ),
    "attention_sink_bound": (lambda a: attention_sink_bound(a["z"], EPS), {"z": LOGITS}, False),
    "softplus_eps": (lambda a: softplus_eps(a["z"], EPS), {"z": LOGITS}, False),
    "maxplus_matmul": (
        lambda a: maxplus_matmul(a["A"], a["B"], EPS),
        {"A": LOGITS, "B": LOGITS},
        False,
    ),
}


def _with(name: str, value: float, index: int = 1) -> dict:
    """ARRAYS with entry ``index`` (flat) of argument ``name`` set to ``value``."""
    arrays = dict(ARRAYS)
    bad = np.array(arrays[name], dtype=np.float64, copy=True)
    bad.reshape(-1)[index] = value
    arrays[name] = bad
    return arrays


def _params(kind: str):
    """(case, argument, value) triples: every ``"rejected"`` or ``"allowed"`` non-finite
    value of every checked argument, or (``"traced"``) a NaN in each argument of the cases
    run under jit/vmap."""
    out = []
    for case, (_, checked, traced) in CASES.items():
        for arg, policy in checked.items():
            if kind == "traced":
                values = (np.nan,) if traced else ()
            else:
                values = (REJECTED if kind == "rejected" else ALLOWED)[policy]
            out += [pytest.param(case, arg, v, id=f"{case}-{arg}-{v}") for v in values]
    return out


# -- eager ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "arg", "value"), _params("rejected"))
def test_non_finite_entry_raises_naming_the_argument(case, arg, value):
    call = CASES[case][0]
    with raises_naming(arg):
        call(_with(arg, value))


@pytest.mark.parametrize(("case", "arg", "value"), _params("allowed"))
def test_allowed_infinities_pass_and_mean_what_they_should(case, arg, value):
    """``-inf`` in log_w / b masks an atom (the output equals deleting it); ``±inf`` logits
    are semiring elements. The output has no NaN."""
    call = CASES[case][0]
    out = jax.tree.leaves(call(_with(arg, value)))
    assert not any(np.any(np.isnan(np.asarray(leaf))) for leaf in out)


def test_masked_bias_and_log_weight_equal_deleting_the_atom():
    x, y, g, log_w = (ARRAYS[k] for k in ("x", "y", "g", "log_w"))
    W, b = ARRAYS["W"], ARRAYS["b"]
    keep = np.arange(N) != 1
    masked = _with("log_w", -np.inf)["log_w"]
    np.testing.assert_allclose(
        np.asarray(hopf_cole(x, y, g, T, EPS, log_w=masked)),
        np.asarray(hopf_cole(x, y[keep], g[keep], T, EPS, log_w=log_w[keep])),
        rtol=1e-14,
    )
    np.testing.assert_allclose(
        np.asarray(lse_layer(x, W, _with("b", -np.inf)["b"], EPS)),
        np.asarray(lse_layer(x, W[keep], b[keep], EPS)),
        rtol=1e-14,
    )
    assert float(lse(np.array([-np.inf, 1.0]), EPS)) == 1.0
    assert float(lse(np.array([np.inf, 1.0]), EPS)) == np.inf
    assert gibbs(np.array([-np.inf, 0.0]), EPS).tolist() == [0.0, 1.0]


def test_eager_message_reports_the_first_bad_entry():
    with pytest.raises(ValueError, match=r"`y` must be finite.*got nan at index \(0, 1\)"):
        hopf_cole(ARRAYS["x"], _with("y", np.nan)["y"], ARRAYS["g"], T, EPS)
    with pytest.raises(ValueError, match=r"`log_w` .*got inf at index \(1,\)"):
        hopf_cole(
            ARRAYS["x"], ARRAYS["y"], ARRAYS["g"], T, EPS, log_w=_with("log_w", np.inf)["log_w"]
        )


# -- traced: jit and vmap ---------------------------------------------------------------------


@pytest.mark.parametrize(("case", "arg", "value"), _params("traced"))
def test_nan_raises_at_run_time_under_jit(case, arg, value):
    call = jax.jit(CASES[case][0])
    jax.block_until_ready(call(ARRAYS))  # clean data: no false alarm
    with raises_at_run_time(arg):
        jax.block_until_ready(call(_with(arg, value)))


@pytest.mark.parametrize(("case", "arg", "value"), _params("traced"))
def test_nan_raises_at_run_time_under_vmap(case, arg, value):
    """vmap over a stack of two copies of ``arg`` (only the second has a NaN), eagerly and
    under jit."""
    call = CASES[case][0]
    stacked = np.stack([ARRAYS[arg], _with(arg, value)[arg]])

    def one(a):
        return call({**ARRAYS, arg: a})

    jax.block_until_ready(jax.vmap(one)(np.stack([ARRAYS[arg]] * 2)))
    for batched in (jax.vmap(one), jax.jit(jax.vmap(one))):
        with raises_at_run_time(arg):
            jax.block_until_ready(batched(stacked))


# -- hj_to_lse's eps under jit and vmap ----------------------------------------------------------


@pytest.mark.parametrize("log_w", [None, ARRAYS["log_w"]], ids=["no_log_w", "log_w"])
def test_hj_to_lse_eps_check_holds_under_jit_and_vmap(log_w):
    """A traced eps is checked at run time even when it does not reach the outputs
    (log_w=None), and even when only W is used."""
    y, g = ARRAYS["y"], ARRAYS["g"]
    both = lambda e: hj_to_lse(y, g, T, log_w=log_w, eps=e)
    only_W = lambda e: hj_to_lse(y, g, T, log_w=log_w, eps=e)[0]
    W0, b0 = hj_to_lse(y, g, T, log_w=log_w, eps=EPS)
    W1, b1 = jax.jit(both)(EPS)  # no false alarm; equal up to XLA's rounding (y/t, …)
    np.testing.assert_allclose(np.asarray(W1), np.asarray(W0), rtol=1e-15)
    np.testing.assert_allclose(np.asarray(b1), np.asarray(b0), rtol=1e-15)
    for f in (both, only_W):
        for bad in (-0.1, np.nan, np.inf):
            with raises_at_run_time("eps"):
                jax.block_until_ready(jax.jit(f)(bad))
        for batched in (jax.vmap(f), jax.jit(jax.vmap(f))):
            jax.block_until_ready(batched(jnp.array([0.0, EPS])))
            with raises_at_run_time("eps"):
                jax.block_until_ready(batched(jnp.array([EPS, -1.0])))
    with raises_naming("eps"):
        hj_to_lse(y, g, T, log_w=log_w, eps=-1.0)


# -- no atoms --------------------------------------------------------------------------------------

_x, _Y0, _G0 = ARRAYS["x"], np.zeros((0, D)), np.zeros(0)
EMPTY = {
    "hopf_cole": ("y", lambda: hopf_cole(_x, _Y0, _G0, T, EPS)),
    "hopf_lax": ("y", lambda: hopf_lax(_x, _Y0, _G0, T)),
    "hopf_cole_grad": ("y", lambda: hopf_cole_grad(_x, _Y0, _G0, T, EPS)),
    "hopf_cole_hessian": ("y", lambda: hopf_cole_hessian(_x, _Y0, _G0, T, EPS)),
    "transport_cost": ("y", lambda: transport_cost(_x, _Y0, T)),
    "heat_kernel_weights": ("y", lambda: heat_kernel_weights(_x, _Y0, _G0, T, EPS)),
    "hj_to_lse": ("y", lambda: hj_to_lse(_Y0, _G0, T)),
    "hopf_cole_sweep": ("y", lambda: hopf_cole_sweep(_x, _Y0, _G0, T, np.array([EPS]), [1])),
    "lse_to_hj": ("W", lambda: lse_to_hj(_Y0, _G0, T)),
    "lse_layer": ("W", lambda: lse_layer(_x, _Y0, _G0, EPS)),
    "lse_layer_gibbs": ("W", lambda: lse_layer_gibbs(_x, _Y0, _G0, EPS)),
    "lse_layer_grad": ("W", lambda: lse_layer_grad(_x, _Y0, _G0, EPS)),
    "lse_layer_hessian": ("W", lambda: lse_layer_hessian(_x, _Y0, _G0, EPS)),
    "lse_layer_backward": ("W", lambda: lse_layer_backward(_x, _Y0, _G0, EPS, np.zeros(3))),
    "lse_layer_hessian_bound": ("W", lambda: lse_layer_hessian_bound(_Y0, EPS)),
    "lse": ("z", lambda: lse(np.zeros((3, 0)), EPS)),
    "lse_axis0": ("z", lambda: lse(np.zeros((0, 3)), EPS, axis=0)),
    "gibbs": ("z", lambda: gibbs(np.zeros(0), EPS)),
    "maxplus_matmul": ("A", lambda: maxplus_matmul(np.zeros((2, 0)), np.zeros((0, 2)), EPS)),
    "attention_weights": ("K", lambda: attention_weights(np.zeros((1, D)), _Y0, EPS)),
    "l2_log_partition": ("K", lambda: l2_log_partition(np.zeros((1, D)), _Y0, T, EPS)),
    "attention_sink_bound": ("z", lambda: attention_sink_bound(np.zeros((2, 0)), EPS)),
}


@pytest.mark.parametrize("case", sorted(EMPTY))
def test_no_atoms_raises_naming_the_argument(case):
    arg, call = EMPTY[case]
    with pytest.raises(ValueError, match=rf"`{arg}` has no atoms .*at least one atom"):
        call()


# -- complex inputs ------------------------------------------------------------------------------

_c = lambda name: ARRAYS[name] + 0j
_x, _y, _g, _W, _b = (ARRAYS[k] for k in ("x", "y", "g", "W", "b"))
_Q, _K, _V, _z = (ARRAYS[k] for k in ("Q", "K", "V", "z"))
COMPLEX = {
    "lse": ("z", lse, lambda f: f(_c("z"), EPS)),
    "lse_log_w": ("log_w", lse, lambda f: f(_z, EPS, log_w=_c("log_w"))),
    "lse_eps": ("eps", lse, lambda f: f(_z, 0.3 + 0.1j)),
    "gibbs": ("z", gibbs, lambda f: f(_c("z"), EPS)),
    "softplus_eps": ("z", softplus_eps, lambda f: f(_c("z"), EPS)),
    "tropical_add": ("b", tropical_add, lambda f: f(_z, _c("z"), EPS)),
    "tropical_mul": ("a", tropical_mul, lambda f: f(_c("z"), _z)),
    "maxplus_matmul": ("B", maxplus_matmul, lambda f: f(_z, _c("z").T, EPS)),
    "hopf_cole_x": ("x", hopf_cole, lambda f: f(_c("x"), _y, _g, T, EPS)),
    "hopf_cole_y": ("y", hopf_cole, lambda f: f(_x, _c("y"), _g, T, EPS)),
    "hopf_cole_g": ("g", hopf_cole, lambda f: f(_x, _y, _c("g"), T, EPS)),
    "hopf_cole_log_w": ("log_w", hopf_cole, lambda f: f(_x, _y, _g, T, EPS, log_w=_c("log_w"))),
    "hopf_cole_t": ("t", hopf_cole, lambda f: f(_x, _y, _g, 1j, EPS)),
    "hopf_cole_A": ("A", hopf_cole, lambda f: f(_x, _y, _g, T, EPS, A=np.eye(D) + 0j)),
    "hopf_lax": ("y", hopf_lax, lambda f: f(_x, _c("y"), _g, T)),
    "hopf_cole_grad": ("g", hopf_cole_grad, lambda f: f(_x, _y, _c("g"), T, EPS)),
    "hopf_cole_hessian": ("x", hopf_cole_hessian, lambda f: f(_c("x"), _y, _g, T, EPS)),
    "transport_cost": ("x", transport_cost, lambda f: f(_c("x"), _y, T)),
    "heat_normalization": ("A", heat_normalization, lambda f: f(D, T, EPS, A=np.eye(D) + 0j)),
    "heat_kernel_weights": ("y", heat_kernel_weights, lambda f: f(_x, _c("y"), _g, T, EPS)),
    "hj_to_lse": ("g", hj_to_lse, lambda f: f(_y, _c("g"), T)),
    "lse_to_hj": ("W", lse_to_hj, lambda f: f(_c("W"), _b, T)),
    "lse_layer": ("b", lse_layer, lambda f: f(_x, _W, _c("b"), EPS)),
    "lse_layer_gibbs": ("x", lse_layer_gibbs, lambda f: f(_c("x"), _W, _b, EPS)),
    "lse_layer_grad": ("W", lse_layer_grad, lambda f: f(_x, _c("W"), _b, EPS)),
    "lse_layer_hessian": ("W", lse_layer_hessian, lambda f: f(_x, _c("W"), _b, EPS)),
    "lse_layer_backward": (
        "cotangent",
        lse_layer_backward,
        lambda f: f(_x, _W, _b, EPS, _c("cotangent")),
    ),
    "lse_layer_hessian_bound": ("W", lse_layer_hessian_bound, lambda f: f(_c("W"), EPS)),
    "quadratic_shift": ("f", quadratic_shift, lambda f: f(_x, _c("f"), T)),
    "affine_pullback": ("M", affine_pullback, lambda f: f(_W, _b, _c("M"), _c("c"))),
    "hopf_cole_sweep": (
        "x",
        hopf_cole_sweep,
        lambda f: f(_c("x"), _y, _g, T, np.array([EPS]), [N]),
    ),
    "hopf_cole_sweep_eps": (
        "eps",
        hopf_cole_sweep,
        lambda f: f(_x, _y, _g, T, np.array([EPS + 0j]), [N]),
    ),
    "feynman_kac": ("x", feynman_kac, lambda f: f(jnp.sum, _c("x"), T, EPS, jax.random.key(0), 8)),
    "attention_weights": ("Q", attention_weights, lambda f: f(_c("Q"), _K, EPS)),
    "dot_product_attention": ("V", dot_product_attention, lambda f: f(_Q, _K, _c("V"), EPS)),
    "l2_attention_weights": ("K", l2_attention_weights, lambda f: f(_Q, _c("K"), T, EPS)),
    "l2_attention": ("V", l2_attention, lambda f: f(_Q, _K, _c("V"), T, EPS)),
    "l2_log_partition": ("Q", l2_log_partition, lambda f: f(_c("Q"), _K, T, EPS)),
    "attention_sink_bound": ("z", attention_sink_bound, lambda f: f(_c("z"), EPS)),
    "kv_update": ("v", kv_update, lambda f: f(kv_init(2), 0.0, np.zeros(2) + 0j, EPS)),
}


@pytest.mark.parametrize("case", sorted(COMPLEX))
def test_complex_input_raises_naming_the_argument(case):
    """hjax's own check (called past the jaxtyping import hook, which under pytest rejects
    a complex array first), and the hooked public function."""
    arg, fn, call = COMPLEX[case]
    with pytest.raises(ValueError, match=rf"`{arg}` must be real"):
        call(inspect.unwrap(fn))
    with raises_naming(arg):
        call(fn)

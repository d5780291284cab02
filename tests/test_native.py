"""The fused CPU kernels (hjax._native) against brute-force XLA, in every transformation.

The reference is ``lse_last(x @ W.T + b, eps)`` on the full B×N logits (its own custom JVP,
exact at eps = 0), differentiated by JAX; the native primitives must agree in value,
forward and reverse mode, second order, vmap, masks, ties and both float dtypes.
"""

import os
import shutil
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import hjax
from hjax import _kernels, _native

pytestmark = pytest.mark.skipif(
    jax.default_backend() != "cpu" or shutil.which(os.environ.get("CXX", "g++")) is None,
    reason="the fused kernels are CPU-only and need a C++ compiler",
)


def _reference(x, W, b, eps):
    return _kernels.lse_last(x @ W.T + b, eps)


def _problem(B, N, k, seed=0, masked=(3,)):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((B, k)))
    W = jnp.asarray(rng.standard_normal((N, k)))
    b = jnp.asarray(rng.standard_normal(N))
    for j in masked:
        b = b.at[j].set(-jnp.inf)
    return x, W, b


def _loss(f):
    return lambda x, W, b, eps: jnp.sum(jnp.sin(f(x, W, b, eps)))


def _close(a, b, tol):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=tol, atol=tol)


def _fused_and_xla(run, monkeypatch):
    """``run()`` with the fused kernels, then with them switched off (the XLA kernels)."""
    fused = run()
    monkeypatch.setattr(_native, "usable", lambda dtype: False)
    return fused, run()


def _hj_problem(seed, B, N, masked, A):
    """Queries ``(B, 2)``, atoms, data and log-weights (atom ``masked`` weighted 0), a metric."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((B, 2)))
    y = jnp.asarray(rng.standard_normal((N, 2)))
    g = jnp.asarray(rng.standard_normal(N))
    log_w = jnp.log(jnp.asarray(rng.uniform(0.1, 1.0, N))).at[masked].set(-jnp.inf)
    return x, y, g, log_w, jnp.asarray(A)


def test_available_on_this_cpu():
    assert _native.available(), _native.status()
    assert _native.usable(jnp.float64) and _native.usable(jnp.float32)
    assert not _native.usable(jnp.float16)


# B·N = 155k logits: several threads; 7×9: one thread, atoms padded to the vector width;
# k = 2 and 8 take the unrolled kernels, k = 3 ... (dispatch) and 5 the generic one.
@pytest.mark.parametrize(("B", "N", "k"), [(300, 517, 2), (7, 9, 5), (130, 600, 8), (64, 1100, 3)])
@pytest.mark.parametrize("eps", [0.0, 0.3, 5.0])
def test_value_and_gradients_match_brute_force(B, N, k, eps):
    x, W, b = _problem(B, N, k)
    e = jnp.asarray(eps)
    _close(_native.affine_lse(x, W, b, e), _reference(x, W, b, e), 1e-12)
    argnums = (0, 1, 2, 3)
    grads = jax.jit(jax.grad(_loss(_native.affine_lse), argnums))(x, W, b, e)
    want = jax.jit(jax.grad(_loss(_reference), argnums))(x, W, b, e)
    _close(grads, want, 1e-11)


@pytest.mark.parametrize("k", [8, 5])
@pytest.mark.parametrize("argnums", [(0,), (1,), (2,), (0, 2), (1, 2)])
def test_gradients_in_some_arguments_only(k, argnums):
    """The backward computes dx and dW only where they are asked for: each subset of the
    arguments gets the same gradients as brute force (and as the full gradient)."""
    x, W, b = _problem(120, 700, k)
    eps = jnp.asarray(0.3)
    got = jax.jit(jax.grad(_loss(_native.affine_lse), argnums))(x, W, b, eps)
    want = jax.jit(jax.grad(_loss(_reference), argnums))(x, W, b, eps)
    _close(got, want, 1e-11)


def test_forward_mode_in_every_argument():
    x, W, b = _problem(200, 400, 2)
    eps = jnp.asarray(0.4)
    rng = np.random.default_rng(1)
    tangents = [jnp.asarray(rng.standard_normal(a.shape)) for a in (x, W, b, eps)]
    primals = (x, W, b, eps)
    _, got = jax.jvp(_native.affine_lse, primals, tuple(tangents))
    _, want = jax.jvp(_reference, primals, tuple(tangents))
    _close(got, want, 1e-11)


def test_second_order_hessian_and_reverse_over_reverse():
    x, W, b = _problem(6, 16, 2)
    eps = jnp.asarray(0.3)
    for argnums in [(0, 3), (1, 2)]:
        got = jax.jit(jax.hessian(_loss(_native.affine_lse), argnums))(x, W, b, eps)
        want = jax.jit(jax.hessian(_loss(_reference), argnums))(x, W, b, eps)
        _close(got, want, 1e-10)
    rr = lambda f: jax.jit(jax.jacrev(jax.grad(_loss(f), argnums=1), argnums=0))(x, W, b, eps)  # noqa: E731
    _close(rr(_native.affine_lse), rr(_reference), 1e-10)
    # d²lse/deps² = Var_π(z)/eps³ (through the entropy's derivative)
    d2 = lambda f: jax.grad(jax.grad(lambda e: jnp.sum(f(x, W, b, e))))(eps)  # noqa: E731
    _close(d2(_native.affine_lse), d2(_reference), 1e-10)


def test_vmap_over_rows_eps_and_atoms():
    x, W, b = _problem(100, 700, 2)
    eps = jnp.asarray([0.0, 0.1, 0.7])
    f, r = _native.affine_lse, _reference
    _close(jax.vmap(lambda e: f(x, W, b, e))(eps), jax.vmap(lambda e: r(x, W, b, e))(eps), 1e-12)
    xs = jnp.stack([x, 2 * x])
    g = lambda fn: jax.vmap(jax.grad(_loss(fn), (0, 1)), (0, None, None, None))  # noqa: E731
    _close(g(f)(xs, W, b, eps[1]), g(r)(xs, W, b, eps[1]), 1e-11)
    Ws = jnp.stack([W, -W])
    h = lambda fn: jax.vmap(jax.grad(_loss(fn), (1, 2)), (None, 0, None, None))  # noqa: E731
    _close(h(f)(x, Ws, b, eps[2]), h(r)(x, Ws, b, eps[2]), 1e-11)


def test_ties_at_eps_zero_share_the_gradient_and_masked_rows_are_empty():
    x, W, b = _problem(50, 300, 2, masked=())
    W = W.at[7].set(W[5]).at[9].set(W[5])  # atoms 5, 7, 9 identical and the max on most rows
    b = b.at[5].set(6.0).at[7].set(6.0).at[9].set(6.0)
    zero = jnp.asarray(0.0)
    grads = jax.grad(_loss(_native.affine_lse), (1, 2, 3))(x, W, b, zero)
    _close(grads, jax.grad(_loss(_reference), (1, 2, 3))(x, W, b, zero), 1e-12)
    assert float(grads[1][5]) == float(grads[1][7]) == float(grads[1][9])
    # d lse/d eps at 0 = log(#ties) on rows whose max is the triple
    _, dval = jax.jvp(lambda e: _native.affine_lse(x, W, b, e), (zero,), (jnp.ones(()),))
    _, want = jax.jvp(lambda e: _reference(x, W, b, e), (zero,), (jnp.ones(()),))
    _close(dval, want, 1e-12)
    assert np.mean(np.isclose(np.asarray(dval), np.log(3.0), rtol=1e-14)) > 0.5
    # every atom masked: the zero measure, lse = -inf, zero gradients
    b_all = jnp.full_like(b, -jnp.inf)
    for eps in (zero, jnp.asarray(0.5)):
        assert np.all(np.asarray(_native.affine_lse(x, W, b_all, eps)) == -np.inf)
        gx, gW = jax.grad(lambda x, W, e=eps: jnp.sum(_native.affine_lse(x, W, b_all, e)), (0, 1))(
            x, W
        )
        assert not np.any(np.asarray(gx)) and not np.any(np.asarray(gW))


def test_float32_against_float64():
    x, W, b = _problem(256, 1024, 2)
    eps = jnp.asarray(0.3)
    want = _reference(x, W, b, eps)
    f32 = [a.astype(jnp.float32) for a in (x, W, b, eps)]
    got = _native.affine_lse(*f32)
    assert got.dtype == jnp.float32
    _close(got.astype(jnp.float64), want, 1e-5)
    grads = jax.grad(_loss(_native.affine_lse), (0, 1, 2))(*f32)
    _close(
        [g.astype(jnp.float64) for g in grads],
        jax.grad(_loss(_reference), (0, 1, 2))(x, W, b, eps),
        2e-5,
    )


def test_float32_gibbs_weights_are_within_a_few_ulp():
    """The kernels' own exp, through the weights: two atoms with logits 0 and t give
    d lse/dx = e^t/(1 + e^t) (x = t, W = (0, 1), eps = 1). For t <= -17, 1 + e^t rounds to 1,
    so lse = 0 and the exp's argument t are exact and the error is the exp's alone, over
    arguments down to float32's underflow. A polynomial coefficient off by 1e-3 fails it."""
    t = np.linspace(-87.0, -17.0, 4001).astype(np.float32)
    W = jnp.asarray([[0.0], [1.0]], jnp.float32)
    b = jnp.zeros(2, jnp.float32)
    loss = lambda x: jnp.sum(_native.affine_lse(x, W, b, jnp.float32(1.0)))  # noqa: E731
    got = np.asarray(jax.jit(jax.grad(loss))(jnp.asarray(t[:, None])))[:, 0]
    want = 1.0 / (1.0 + np.exp(-t.astype(np.float64)))
    assert np.max(np.abs(got / want - 1)) < 2 * np.finfo(np.float32).eps


@pytest.mark.parametrize("eps", [0.01, 0.001])
def test_float32_gradients_at_small_eps_are_as_accurate_as_xla(eps):
    """Large logits (|lse| ≈ 20) at small eps: the backward's weights e^{(z − lse)/eps} need
    lse to better than its float32 rounding (ulp(20)/eps = 2e-3 at eps = 1e-3); with the
    compensated lse the fused gradient is as close to float64 as XLA's float32 gradient."""
    x, W, b = _problem(256, 1024, 2, masked=())
    b = b + 20.0
    e64 = jnp.asarray(eps)
    want = jax.grad(lambda b: jnp.sum(_reference(x, W, b, e64)))(b)
    f32 = [a.astype(jnp.float32) for a in (x, W, b, e64)]

    def error(f):
        g = jax.grad(lambda b: jnp.sum(f(f32[0], f32[1], b, f32[3])))(f32[2])
        return float(jnp.max(jnp.abs(g.astype(jnp.float64) - want)))

    assert error(_native.affine_lse) <= 2 * error(_reference) + 1e-6


def test_public_functions_agree_with_the_xla_kernels(monkeypatch):
    """hopf_cole and lse_layer (blocked sizes, masks, a metric, eps = 0) with the fused
    kernel and with it switched off, values and gradients."""
    x, y, g, log_w, A = _hj_problem(3, 500, 300, 4, [[2.0, 0.3], [0.3, 0.5]])

    def run():
        out = []
        for eps in (0.0, 0.2):
            f = lambda y, g, e=eps: jnp.sum(hjax.hopf_cole(x, y, g, 0.7, e, A=A, log_w=log_w))  # noqa: E731
            out.append(jax.jit(jax.value_and_grad(f, (0, 1)))(y, g))
            h = lambda W, b, e=eps: jnp.sum(hjax.lse_layer(x, W, b, e) ** 2)  # noqa: E731
            out.append(jax.jit(jax.value_and_grad(h, (0, 1)))(y, g))
        return out

    _close(*_fused_and_xla(run, monkeypatch), 1e-11)


def test_hopf_lax_with_exact_ties_agrees_with_the_xla_kernels(monkeypatch):
    """hopf_lax through the fused kernel's eps = 0 branch against the blocked jnp.max:
    values and gradients in (x, y, g), with atoms tied for every query (the gradient is
    averaged over the tie, as jnp.max's)."""
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.standard_normal((400, 2)))
    y = jnp.asarray(rng.standard_normal((300, 2)))
    y = y.at[1].set(y[0]).at[2].set(y[0])  # a triple of atoms at one point
    g = jnp.asarray(rng.standard_normal(300)).at[:3].set(-50.0)  # the minimiser everywhere

    def run():
        f = lambda x, y, g: jnp.sum(jnp.cos(hjax.hopf_lax(x, y, g, 0.7)))  # noqa: E731
        return jax.jit(jax.value_and_grad(f, (0, 1, 2)))(x, y, g)

    fused, xla = _fused_and_xla(run, monkeypatch)
    np.testing.assert_array_equal(fused[1][2][:3], fused[1][2][0])  # shared equally
    _close(fused, xla, 1e-12)


def test_calls_from_several_threads_at_once_agree_with_brute_force():
    """The kernels share one pool of worker threads: calls made at the same time from
    several Python threads (forward and backward) are run one after the other, each right
    (and none waits forever: the threads are daemons, joined with a timeout)."""
    x, W, b = _problem(300, 700, 2)
    eps = jnp.asarray(0.3)
    value_grad = jax.jit(jax.value_and_grad(_loss(_native.affine_lse), (0, 1, 2)))
    want = jax.jit(jax.value_and_grad(_loss(_reference), (0, 1, 2)))
    scales = [0.5 + 0.1 * i for i in range(12)]
    got = {}

    def run(part):
        for s in scales[part::4]:
            got[s] = jax.block_until_ready(value_grad(s * x, W, b, eps))

    threads = [threading.Thread(target=run, args=(part,), daemon=True) for part in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "concurrent kernel calls did not finish"
    for s in scales:
        _close(got[s], want(s * x, W, b, eps), 1e-11)


def test_without_a_compiler_it_warns_and_keeps_the_xla_kernels(tmp_path):
    script = (
        "import warnings, jax, jax.numpy as jnp, numpy as np\n"
        "jax.config.update('jax_enable_x64', True)\n"
        "import hjax\n"
        "from hjax import _native\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    x = jnp.asarray(np.random.default_rng(0).standard_normal((400, 2)))\n"
        "    v = hjax.hopf_cole(x, x[:300], jnp.zeros(300), 0.7, 0.3)\n"
        "print(_native.available(), repr(_native.status()), len(w), str(w[0].message))\n"
    )
    env = {
        **os.environ,
        "CXX": str(tmp_path / "no-such-compiler"),
        "HJAX_NATIVE_CACHE": str(tmp_path),
    }
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("False"), out.stdout
    assert "no-such-compiler" in out.stdout and "using the XLA kernels" in out.stdout


def test_packed_least_squares_matches_autodiff_of_brute_force():
    """One fused training step (hjax.train_sweep's kernel): per-width MSE of packed LSE
    networks and its gradient against jax.value_and_grad of lse_last on full logits, eps
    mixed with 0 (ties: two identical atoms in the second width)."""
    rng = np.random.default_rng(5)
    widths = (7, 20, 33)
    x = jnp.asarray(rng.uniform(-2, 2, (300, 2)))
    y = jnp.linalg.norm(x, axis=1)
    W = jnp.asarray(0.5 * rng.standard_normal((sum(widths), 2)))
    b = jnp.asarray(0.3 * rng.standard_normal(sum(widths)))
    W, b = W.at[8].set(W[9]), b.at[8].set(b[9])
    cuts = np.cumsum(widths)[:-1]

    def brute(W, b, eps):
        parts = zip(jnp.split(W, cuts), jnp.split(b, cuts), eps, strict=True)
        return jnp.stack([jnp.mean((_reference(x, w, c, e) - y) ** 2) for w, c, e in parts])

    for eps in ([0.1, 0.05, 0.02], [0.3, 0.0, 1e-3], [0.0, 0.0, 0.0]):
        eps = jnp.asarray(eps)
        loss, dW, db = _native.packed_mse(x, y, W, b, eps, widths)
        _close(loss, brute(W, b, eps), 1e-13)
        want = jax.jit(jax.grad(lambda W, b, e=eps: jnp.sum(brute(W, b, e)), (0, 1)))(W, b)
        _close((dW, db), want, 1e-13)
    # vmap over the networks (seeds): one call each
    Ws, bs = jnp.stack([W, -W]), jnp.stack([b, 2 * b])
    out = jax.vmap(lambda W, b: _native.packed_mse(x, y, W, b, eps, widths))(Ws, bs)
    _close([o[1] for o in out], _native.packed_mse(x, y, -W, 2 * b, eps, widths), 1e-15)


def test_train_sweep_with_and_without_the_fused_kernel(monkeypatch):
    rng = np.random.default_rng(6)
    x = rng.uniform(-2, 2, (200, 2))
    y = np.linalg.norm(x, axis=1)
    widths, eps = (5, 12), jnp.asarray([[0.2, 0.1], [0.0, 0.05]])

    def run():  # full batch, and minibatches (the points then batched per seed as well)
        out = []
        for batch_size in (None, 64):
            s = hjax.train_sweep(
                x, y, widths, eps, optimizer=optax.adam(0.01), steps=40, seeds=2,
                batch_size=batch_size, chunk=20,
            )  # fmt: skip
            out += [s.train_loss, s.W, s.b]
        return out

    _close(*_fused_and_xla(run, monkeypatch), 1e-10)


def test_sweep_values_and_gradients_agree_with_the_xla_kernels(monkeypatch):
    """hopf_cole_sweep (masked log-weights, a metric, eps = 0 and small eps, several widths)
    with the fused kernel and with the XLA kernels: values and gradients in (y, g, log_w)."""
    x, y, g, log_w, A = _hj_problem(7, 70, 90, 5, [[1.5, 0.2], [0.2, 0.8]])
    eps = jnp.asarray([0.0, 1e-3, 0.1, 1.0])

    def run():
        def f(y, g, log_w):
            u = hjax.hopf_cole_sweep(x, y, g, 0.7, eps, (4, 30, 90), log_w=log_w, A=A)
            return jnp.sum(jnp.sin(u))

        return jax.jit(jax.value_and_grad(f, (0, 1, 2)))(y, g, log_w)

    _close(*_fused_and_xla(run, monkeypatch), 1e-10)

"""hjax.sweep: eps × width × point grids, against brute force and per-width hopf_cole."""

import re
import subprocess
import sys
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import raises_naming, run_two_processes

from hjax import _native
from hjax import sweep as sweep_module
from hjax.hopf_cole import hopf_cole, hopf_lax
from hjax.sweep import _spread_limit, hopf_cole_sweep

N, P, D = 40, 13, 2
T = 0.7
WIDTHS = (1, 3, 8, 20, 33)  # widths[-1] < N: only a prefix of the atoms is read
EPS = np.array([0.0, 1e-3, 0.05, 0.3, 1.0, 2.5])
A_MAT = np.array([[2.0, 0.3], [0.3, 0.5]])
# Atoms 3..7 (the whole segment [3, 8)) and every 7th atom are masked.
MASK = (np.arange(N) >= 3) & (np.arange(N) < 8) | (np.arange(N) % 7 == 6)


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(P, D))
    y = rng.normal(size=(N, D))
    g = np.abs(y).sum(-1) + 0.3 * rng.normal(size=N)
    log_w = np.where(MASK, -np.inf, 0.5 * rng.normal(size=N))
    return x, y, g, log_w


X, Y, G, LOG_W = _data()


def brute_force(x, y, g, t, eps, widths, *, log_w=None, A=None, normalized=False, renorm=False):
    """u[e, w, p] by an explicit NumPy loop over eps and widths (float64, no JAX)."""
    n_atoms, d = y.shape
    A = np.eye(d) if A is None else np.asarray(A)
    A_inv = np.linalg.inv(A)
    log_w = np.zeros(n_atoms) if log_w is None else np.asarray(log_w)
    diff = x[:, None, :] - y[None, :, :]
    cost = np.einsum("pni,ij,pnj->pn", diff, A_inv, diff) / (2 * t)
    out = np.empty((len(eps), len(widths), len(x)))
    for i, e in enumerate(eps):
        for k, n in enumerate(widths):
            lw = log_w[:n] + (np.log(n_atoms / n) if renorm else 0.0)
            active = lw > -np.inf
            a = cost[:, :n][:, active] + g[:n][active]
            if e == 0:
                u = a.min(axis=1)
            else:
                s = -a / e + lw[active]
                m = s.max(axis=1, keepdims=True)
                u = -e * (m[:, 0] + np.log(np.exp(s - m).sum(axis=1)))
                if normalized:
                    u += e * d / 2 * np.log(2 * np.pi * e * t) + e / 2 * np.log(np.linalg.det(A))
            out[i, k] = u
    return out


CONFIGS = {
    "counting": dict(),
    # every option at once: masked log-weights, a metric, normalization, prefix reweighting
    "all_options": dict(log_w=LOG_W, A=A_MAT, normalized=True, renormalize_prefix=True),
}
CHUNK = 5  # P = 13 = 5 + 5 + 3: a ragged last chunk


def _kwargs(config):
    return {k: (jnp.asarray(v) if isinstance(v, np.ndarray) else v) for k, v in config.items()}


def _sweep(config, eps=EPS, t=T, **extra):
    return hopf_cole_sweep(
        jnp.asarray(X),
        jnp.asarray(Y),
        jnp.asarray(G),
        t,
        jnp.asarray(eps),
        WIDTHS,
        **_kwargs(config),
        **extra,
    )


@pytest.fixture(scope="module")
def swept():
    return {name: np.asarray(_sweep(config)) for name, config in CONFIGS.items()}


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "xla"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_brute_force(swept, name, fused, monkeypatch):
    """Every (eps, width, point) against an explicit NumPy loop, eps = 0 included; with the
    fused CPU kernel (where it is usable) and with the XLA kernels (GPU/TPU, no compiler)."""
    config = CONFIGS[name]
    if fused:
        u = swept[name]
    else:
        monkeypatch.setattr(_native, "usable", lambda dtype: False)
        u = np.asarray(_sweep(config))
    assert u.shape == (len(EPS), len(WIDTHS), P)
    ref = brute_force(
        X,
        Y,
        G,
        T,
        EPS,
        WIDTHS,
        log_w=config.get("log_w"),
        A=config.get("A"),
        normalized=config.get("normalized", False),
        renorm=config.get("renormalize_prefix", False),
    )
    np.testing.assert_allclose(u, ref, rtol=0, atol=1e-12)


def test_matches_separate_hopf_cole_at_each_width(swept):
    """Every option at once (masked log_w, A, normalized, prefix reweighting) vs hopf_cole.

    Width n is hopf_cole on the first n atoms with log-weights log_w + log(N/n); atoms past
    n are dropped by masking them (log-weight -inf, exact in hopf_cole), which keeps one
    shape and hence one compilation for all widths.
    """
    u = swept["all_options"]

    @jax.jit
    def per_width(eps, log_w):
        one = lambda x, e: hopf_cole(x, Y, G, T, e, log_w=log_w, A=A_MAT, normalized=True)
        return jax.vmap(lambda e: jax.vmap(lambda x: one(x, e))(X))(eps)

    for k, n in enumerate(WIDTHS):
        log_w = np.where(np.arange(N) < n, LOG_W + np.log(N / n), -np.inf)
        np.testing.assert_allclose(u[:, k], per_width(EPS, log_w), rtol=0, atol=1e-12)


def test_eps_zero_row_is_hopf_lax(swept):
    """eps = 0 is the tropical limit: hopf_lax's plain min over the active atoms (Thm 5.1).

    Normalization and prefix reweighting both vanish at eps = 0. hopf_lax sees only the
    active atoms of each prefix (masked atoms and those past the width are dropped).
    """
    for name, config in CONFIGS.items():
        active = ~MASK if "log_w" in config else np.ones(N, bool)
        for k, n in enumerate(WIDTHS):
            keep = active & (np.arange(N) < n)
            ref = hopf_lax(X, Y[keep], G[keep], T, A=config.get("A"))
            np.testing.assert_allclose(swept[name][0, k], ref, rtol=0, atol=1e-14)


def test_fully_masked_segment_only_reweights(swept):
    """Atoms 3..7 (the whole segment [3, 8)) are masked: widths 3 and 8 carry the same
    atoms with prefix weights vol/3 and vol/8, so u^8 - u^3 = eps log(8/3) exactly."""
    u = swept["all_options"]
    want = np.broadcast_to(EPS[:, None] * np.log(8 / 3), u[:, 2].shape)
    np.testing.assert_allclose(u[:, 2] - u[:, 1], want, rtol=0, atol=1e-13)
    # Width 1 is the single atom 0: c_t(x, y_0) + g_0 - eps log(w_0 N) + normalization.
    diff = X - Y[0]
    cost = np.einsum("pi,ij,pj->p", diff, np.linalg.inv(A_MAT), diff) / (2 * T)
    e = EPS[1:, None]
    norm = e * np.log(2 * np.pi * e * T) + e / 2 * np.log(np.linalg.det(A_MAT))  # d = 2
    want = cost + G[0] - e * (LOG_W[0] + np.log(N)) + norm
    np.testing.assert_allclose(u[1:, 0], want, rtol=0, atol=1e-13)


def test_every_prefix_width(swept):
    """All widths 1..12 (W² > n_W: the cumulative ⊕ runs as an associative scan)."""
    widths = tuple(range(1, 13))
    u = hopf_cole_sweep(X, Y, G, T, EPS, widths, log_w=LOG_W)
    ref = brute_force(X, Y, G, T, EPS, widths, log_w=LOG_W)
    np.testing.assert_allclose(u, ref, rtol=0, atol=1e-12)


def test_vmap_over_eps_path_equals_loop_path(swept, monkeypatch):
    """GPU/TPU run the eps axis as a vmap, CPU as a loop: both give the same values."""
    monkeypatch.setattr(sweep_module, "_loop_over_eps", lambda: False)
    u = _sweep(CONFIGS["all_options"], point_chunk=CHUNK)
    np.testing.assert_allclose(u, swept["all_options"], rtol=0, atol=1e-14)


def test_large_log_weight_spread_falls_back_to_the_per_eps_shift(monkeypatch):
    """Log-weights spread beyond the shared-shift limit inside a segment: still exact.

    Even atoms are cheap but weigh e^-800, odd atoms weigh 1. The eps-independent shift
    (max z, max log w) then leaves every term of a segment sum below e^-745 at small eps:
    the sum underflows to 0, the segment silently drops out of the prefix and u is wrong
    (shown below by forcing that kernel). The sweep sees the spread and uses the per-eps
    max shift of hjax.lse instead — eagerly for concrete log_w, and by lax.cond at run
    time for traced log_w. (The XLA kernels: the fused CPU kernel tilts every eps exactly.)
    """
    monkeypatch.setattr(_native, "usable", lambda dtype: False)
    log_w = np.where(np.arange(N) % 2 == 0, -800.0, 0.0)
    assert 800.0 > _spread_limit(np.float64)
    g = G - 5.0 * (np.arange(N) % 2 == 0)
    ref = brute_force(X, Y, g, T, EPS, WIDTHS, log_w=log_w)
    assert np.all(np.isfinite(ref))
    forced_shared = sweep_module._sweep(
        X, Y[:33], g[:33], jnp.asarray(T), EPS, log_w[:33], jnp.zeros(()),
        widths=WIDTHS, shift="shared", eps_loop=True, chunk=P, n_atoms=N,
        normalized=False, renorm=False, mesh=None,
    )  # fmt: skip
    assert np.max(np.abs(forced_shared - ref)) > 1.0, "this data should need the fallback"
    eager = hopf_cole_sweep(X, Y, g, T, EPS, WIDTHS, log_w=log_w)
    traced = jax.jit(lambda lw, eps: hopf_cole_sweep(X, Y, g, T, eps, WIDTHS, log_w=lw))(log_w, EPS)
    np.testing.assert_allclose(eager, ref, rtol=1e-14, atol=1e-12)
    np.testing.assert_allclose(traced, ref, rtol=1e-14, atol=1e-12)


def test_chunked_equals_unchunked(swept):
    for chunk in (CHUNK, 100):  # ragged last chunk; chunk > P (one chunk)
        u = _sweep(CONFIGS["all_options"], point_chunk=chunk)
        np.testing.assert_allclose(u, swept["all_options"], rtol=0, atol=1e-14)


def test_sharded_on_one_device_equals_unsharded(swept):
    u = _sweep(CONFIGS["all_options"], sharded=True, point_chunk=CHUNK)
    np.testing.assert_allclose(u, swept["all_options"], rtol=0, atol=1e-14)


class _CompileCounter:
    """Counts XLA backend compilations (any function) while active."""

    EVENT = "/jax/core/compile/backend_compile_duration"

    def __init__(self):
        self.count = 0

    def __call__(self, event, duration, **kwargs):
        if event == self.EVENT:
            self.count += 1

    def __enter__(self):
        jax.monitoring.register_event_duration_secs_listener(self)
        return self

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self)


@pytest.mark.parametrize("progress", [False, True])
def test_new_eps_grid_and_t_do_not_recompile(progress, capsys):
    config = CONFIGS["all_options"]
    extra = dict(point_chunk=CHUNK, progress=progress)
    _sweep(config, **extra)  # compile
    grids = [(np.linspace(0.0, 3.0, len(EPS)), 0.25), (np.geomspace(1e-4, 10.0, len(EPS)), 4)]
    with _CompileCounter() as compiles:
        outs = [_sweep(config, eps=eps, t=t, **extra) for eps, t in grids]
    assert compiles.count == 0
    for (eps, t), u in zip(grids, outs, strict=True):
        ref = brute_force(
            X, Y, G, t, eps, WIDTHS, log_w=LOG_W, A=A_MAT, normalized=True, renorm=True
        )
        np.testing.assert_allclose(u, ref, rtol=0, atol=1e-12)
    capsys.readouterr()


def test_traces_once_inside_user_jit():
    """Traced eps, t and log_w: one trace for any eps grid / time / weights (eqx counter)."""

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def sweep(eps, t, log_w):
        return hopf_cole_sweep(
            jnp.asarray(X), jnp.asarray(Y), jnp.asarray(G), t, eps, WIDTHS, log_w=log_w
        )

    for scale, t in ((1.0, 0.7), (0.5, 2.0)):
        eps = jnp.asarray(EPS * scale)
        u = sweep(eps, jnp.asarray(t), jnp.asarray(LOG_W))
        ref = brute_force(X, Y, G, t, EPS * scale, WIDTHS, log_w=LOG_W)
        np.testing.assert_allclose(u, ref, rtol=0, atol=1e-12)


def test_progress_reports_every_chunk_and_is_silent_by_default(swept, capsys):
    config = CONFIGS["all_options"]
    u = _sweep(config, point_chunk=CHUNK, progress=True)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("hopf_cole_sweep:")]
    assert [re.search(r"chunk (\d+)/(\d+)", ln).groups() for ln in lines] == [
        ("1", "3"),
        ("2", "3"),
        ("3", "3"),
    ]
    assert all(re.search(r"[\d.]+ s elapsed", ln) for ln in lines)
    np.testing.assert_allclose(u, swept["all_options"], rtol=0, atol=1e-14)
    _sweep(config, point_chunk=CHUNK)
    assert capsys.readouterr() == ("", "")


def test_sharded_over_four_devices_equals_one_device(swept, tmp_path):
    """4 host devices (XLA flag set before jax starts, so in a subprocess)."""
    config = CONFIGS["all_options"]
    np.savez(
        tmp_path / "in.npz",
        x=X,
        y=Y,
        g=G,
        t=T,
        eps=EPS,
        widths=np.asarray(WIDTHS),
        log_w=config["log_w"],
        A=config["A"],
    )
    script = Path(__file__).with_name("_sharded_sweep_script.py")
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = np.load(tmp_path / "out.npz")
    assert int(out["n_devices"]) == 4
    assert int(out["n_result_devices"]) == 4
    for key in ("whole", "progress"):
        np.testing.assert_allclose(out[key], swept["all_options"], rtol=0, atol=1e-14)
    assert "chunk 2/2" in result.stderr  # P = 13 on 4 devices: 4 per device, chunks of 2


def test_distributed_over_two_processes_equals_one_process(tmp_path):
    """Points split over 2 jax.distributed CPU processes (gloo, an odd count so one process
    pads): both return the whole grid, equal to one process and to ``hopf_cole`` per width;
    in a single process ``distributed=True`` changes nothing, under jit too."""
    helper, results = run_two_processes("sweep", tmp_path)
    args, kwargs = helper.sweep_arguments()
    single = hopf_cole_sweep(*args, **kwargs)
    assert single.shape == (3, 3, 7)
    x, y, g, t, eps, widths = args
    for i, n in enumerate(widths):
        for e, eps_e in enumerate(eps):
            direct = hopf_cole(
                x, y[:n], g[:n], t, eps_e, log_w=kwargs["log_w"][:n], A=kwargs["A"],
                normalized=True,
            )  # fmt: skip
            np.testing.assert_allclose(single[e, i], direct, rtol=1e-12, atol=1e-12)
    for got in results:
        assert int(got["process_count"]) == 2
        np.testing.assert_allclose(got["u"], single, rtol=0, atol=1e-13)
    jitted = jax.jit(lambda x: hopf_cole_sweep(x, *args[1:], **kwargs, distributed=True))
    np.testing.assert_allclose(jitted(args[0]), single, rtol=1e-13, atol=1e-13)


def test_float32_runs_in_float32_and_is_accurate():
    config = CONFIGS["all_options"]
    f32 = {k: (v.astype(np.float32) if isinstance(v, np.ndarray) else v) for k, v in config.items()}
    u = hopf_cole_sweep(
        jnp.asarray(X, jnp.float32),
        jnp.asarray(Y, jnp.float32),
        jnp.asarray(G, jnp.float32),
        jnp.asarray(T, jnp.float32),
        jnp.asarray(EPS, jnp.float32),
        WIDTHS,
        **_kwargs(f32),
    )
    assert u.dtype == jnp.float32
    ref = brute_force(X, Y, G, T, EPS, WIDTHS, log_w=LOG_W, A=A_MAT, normalized=True, renorm=True)
    err = np.max(np.abs(np.asarray(u, np.float64) - ref))
    assert err <= 50 * np.finfo(np.float32).eps * np.max(np.abs(ref)), err


def test_gradients_match_per_width_hopf_cole():
    """∂/∂x and ∂/∂g of Σ u through the sweep = through per-width hopf_cole (autodiff both).

    Finite everywhere, including eps = 0 and masked atoms.
    """
    widths_mask = np.arange(N)[None, :] < np.asarray(WIDTHS)[:, None]  # (W, N)
    log_w_per_width = np.where(widths_mask, LOG_W, -np.inf)

    def total_sweep(x, g):
        return jnp.sum(hopf_cole_sweep(x, Y, g, T, EPS, WIDTHS, log_w=LOG_W, point_chunk=CHUNK))

    def total_reference(x, g):
        def one(lw, e, xp):
            return hopf_cole(xp, Y, g, T, e, log_w=lw)

        over_points = jax.vmap(one, in_axes=(None, None, 0))
        over_eps = jax.vmap(over_points, in_axes=(None, 0, None))
        return jnp.sum(jax.vmap(over_eps, in_axes=(0, None, None))(log_w_per_width, EPS, x))

    got = jax.jit(jax.grad(total_sweep, argnums=(0, 1)))(X, G)
    want = jax.jit(jax.grad(total_reference, argnums=(0, 1)))(X, G)
    for a, b in zip(got, want, strict=True):
        assert np.all(np.isfinite(a))
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


BAD_INPUTS = [
    ("widths", dict(widths=(3, 3, 8))),
    ("widths", dict(widths=(8, 3))),
    ("widths", dict(widths=(0, 3))),
    ("widths", dict(widths=(3, N + 1))),
    ("widths", dict(widths=())),
    ("eps", dict(eps=np.array([0.1, -0.2]))),
    ("eps", dict(eps=np.array([0.1, np.nan]))),
    ("eps", dict(eps=np.array([0.1, np.inf]))),
    ("eps", dict(eps=np.array(0.1))),
    ("eps", dict(eps=np.ones((2, 2)))),
    ("t", dict(t=0.0)),
    ("t", dict(t=-1.0)),
    ("x", dict(x=np.ones((P, D + 1)))),
    ("x", dict(x=np.ones(D))),
    ("g", dict(g=np.ones(N - 1))),
    ("log_w", dict(log_w=np.zeros(N + 1))),
    ("A", dict(A=np.array([[1.0, 0.0], [0.0, -1.0]]))),
    ("point_chunk", dict(point_chunk=0)),
]


@pytest.mark.parametrize(("argument", "change"), BAD_INPUTS)
def test_bad_inputs_name_the_argument(argument, change):
    kwargs = dict(x=X, y=Y, g=G, t=T, eps=EPS, widths=WIDTHS)
    kwargs.update(change)
    kwargs = {k: (jnp.asarray(v) if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}
    with raises_naming(argument):
        hopf_cole_sweep(**kwargs)


def test_progress_inside_jit_is_rejected():
    with raises_naming("progress"):
        jax.jit(
            lambda eps: hopf_cole_sweep(
                jnp.asarray(X), jnp.asarray(Y), jnp.asarray(G), T, eps, WIDTHS, progress=True
            )
        )(jnp.asarray(EPS))

"""hjax.train_sweep: packed widths = separate runs, eps grids do not recompile, the gradient
is the plain-JAX gradient of the MSE, minibatches, float32, validation, checkpoints, errors."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import raises_naming, run_two_processes

import hjax
from hjax import train as train_module


def _data(n=48, d=2, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2.0, 2.0, (n, d)).astype(dtype)
    return x, np.linalg.norm(x, axis=-1).astype(dtype)


@jax.jit
def _plain_mse(W, b, eps, x, y):
    """Independent MSE of eps·logsumexp((xWᵀ + b)/eps) (jax.nn.logsumexp; max at eps = 0)."""
    z = x @ W.T + b
    safe = jnp.where(eps > 0, eps, 1.0)
    f = jnp.where(eps > 0, safe * jax.nn.logsumexp(z / safe, axis=-1), jnp.max(z, axis=-1))
    return jnp.mean((f - y) ** 2)


_plain_grad = jax.jit(jax.grad(_plain_mse, argnums=(0, 1)))


def test_gradient_is_plain_jax_grad_of_mse():
    """One SGD step moves (W, b) by exactly -lr·∇MSE, ∇ from jax.grad of a plain MSE."""
    x, y = _data()
    widths, eps, lr = (3, 8), np.array([0.0, 0.05, 0.7]), 0.1
    kw = dict(steps=1, seeds=[0, 3], key=7)
    before = hjax.train_sweep(x, y, widths, eps, optimizer=optax.sgd(0.0), **kw)
    after = hjax.train_sweep(x, y, widths, eps, optimizer=optax.sgd(lr), **kw)
    for k in range(len(widths)):
        for s in range(2):
            for e, eps_e in enumerate(eps):
                W0, b0 = before.W[k][s, e], before.b[k][s, e]
                gW, gb = _plain_grad(W0, b0, eps_e, x, y)
                np.testing.assert_allclose((W0 - after.W[k][s, e]) / lr, gW, atol=1e-12)
                np.testing.assert_allclose((b0 - after.b[k][s, e]) / lr, gb, atol=1e-12)
                assert float(before.train_loss[0, s, e, k]) == pytest.approx(
                    float(_plain_mse(W0, b0, eps_e, x, y)), rel=1e-12
                )


def test_packed_widths_equal_separate_runs():
    """A packed sweep = each (seed, width) trained alone, to round-off — also with a
    global-norm clip, which would couple the widths if they shared one optimizer state."""
    x, y = _data()
    widths, seeds = (4, 9, 15), (1, 4)
    eps = hjax.scaled_eps(widths, 2, [0.5, 2.0])
    opt = optax.chain(optax.clip_by_global_norm(0.05), optax.adam(0.02))
    packed = hjax.train_sweep(x, y, widths, eps, optimizer=opt, steps=25, seeds=seeds, key=3)
    for k, n in enumerate(widths):
        for s, seed in enumerate(seeds):
            alone = hjax.train_sweep(
                x, y, [n], eps[:, k], optimizer=opt, steps=25, seeds=[seed], key=3
            )
            np.testing.assert_allclose(packed.W[k][s], alone.W[0][0], rtol=0, atol=1e-12)
            np.testing.assert_allclose(packed.b[k][s], alone.b[0][0], rtol=0, atol=1e-12)
            np.testing.assert_allclose(
                packed.train_loss[:, s, :, k], alone.train_loss[:, 0, :, 0], rtol=1e-12
            )


def test_adam_training_matches_the_reference_numpy_loop():
    """60 full-batch Adam steps = the reference's NumPy loop (benchmarks/_reference_loop.py:
    two-pass softmax, hand-written Adam) from the same initial network, at each width."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks._reference_loop import reference_train

    x, y = _data(n=64, d=2)
    widths, steps, lr = (5, 12), 60, 0.006
    eps = hjax.scaled_eps(widths, 2)
    kw = dict(steps=steps, seeds=[2], key=0)
    init = hjax.train_sweep(x, y, widths, eps, optimizer=optax.sgd(0.0), **{**kw, "steps": 1})
    sweep = hjax.train_sweep(x, y, widths, eps, optimizer=optax.adam(lr), **kw)
    for k in range(len(widths)):
        W, b, losses = reference_train(
            x, y, init.W[k][0, 0], init.b[k][0, 0], float(eps[0, k]), steps, lr
        )
        np.testing.assert_allclose(sweep.W[k][0, 0], W, rtol=0, atol=1e-10)
        np.testing.assert_allclose(sweep.b[k][0, 0], b, rtol=0, atol=1e-10)
        np.testing.assert_allclose(sweep.train_loss[:, 0, 0, k], losses, rtol=1e-10)
        assert losses[-1] < 0.5 * losses[0]  # it trained: the comparison is not vacuous


def test_new_eps_grid_does_not_recompile():
    x, y = _data(n=32)
    opt = optax.adam(0.01)
    kw = dict(optimizer=opt, steps=6, seeds=2, chunk=3)
    hjax.train_sweep(x, y, (3, 5), [0.1, 0.2, 0.4], **kw)
    traces = eqx.debug.get_num_traces(train_module._train_chunk)
    a = hjax.train_sweep(x, y, (3, 5), [0.3, 0.6, 1.2], **kw)
    b = hjax.train_sweep(x, y, (3, 5), np.full((3, 2), 0.05), **kw)
    assert eqx.debug.get_num_traces(train_module._train_chunk) == traces
    assert not np.allclose(a.W[0], b.W[0])  # the new eps were used


def test_trained_networks_beat_their_initialisation():
    x, y = _data(n=64, d=1)
    sweep = hjax.train_sweep(
        x, y, (4, 16), hjax.scaled_eps((4, 16), 1), optimizer=optax.adam(0.02), steps=200
    )
    rmse0 = np.sqrt(np.asarray(sweep.train_loss[0]))
    rmse = np.asarray(sweep.rmse(x, y))
    assert np.all(rmse < 0.3 * rmse0)
    # the returned layers are hjax.LSELayers evaluated at their eps
    layer = sweep.layer(0, 16)
    assert isinstance(layer, hjax.LSELayer)
    np.testing.assert_allclose(
        layer(x, sweep.eps_of(16)), sweep.predict(x)[0, 0, 1], rtol=1e-13, atol=1e-13
    )


def test_minibatch_path():
    x, y = _data(n=40)
    kw = dict(optimizer=optax.adam(0.02), steps=30, seeds=2, key=1)
    mini = hjax.train_sweep(x, y, (5, 10), 0.2, batch_size=8, **kw)
    full = hjax.train_sweep(x, y, (5, 10), 0.2, **kw)
    loss = np.asarray(mini.train_loss)
    assert loss.shape == (30, 2, 1, 2) and np.all(np.isfinite(loss))
    assert np.all(np.asarray(mini.rmse(x, y)) < np.sqrt(loss[0]))
    assert not np.allclose(mini.W[1], full.W[1])
    # seeds draw different batches: equal inits would still give different networks
    assert not np.allclose(mini.train_loss[:, 0], mini.train_loss[:, 1])
    # a batch of the whole set (a permutation of it) is full-batch training, to round-off
    whole = hjax.train_sweep(x, y, (5, 10), 0.2, batch_size=40, **kw)
    np.testing.assert_allclose(whole.W[1], full.W[1], rtol=0, atol=1e-10)


def test_minibatches_cover_each_epoch():
    x = jnp.arange(10.0)[:, None]
    seen = [
        int(v)
        for step in range(5)
        for v in train_module._batch(jax.random.key(0), step, x, x[:, 0], 2)[1]
    ]
    assert sorted(seen) == list(range(10))


def test_float32_path():
    x, y = _data(n=48, d=1, dtype=np.float32)
    kw = dict(optimizer=optax.adam(0.02), steps=60, seeds=2, key=2)
    s32 = hjax.train_sweep(x, y, (4, 12), [0.05, 0.2], **kw)
    assert s32.eps.dtype == s32.W[0].dtype == s32.train_loss.dtype == jnp.float32
    assert s32.predict(x).dtype == jnp.float32
    s64 = hjax.train_sweep(x.astype(np.float64), y.astype(np.float64), (4, 12), [0.05, 0.2], **kw)
    np.testing.assert_allclose(s32.rmse(x, y), s64.rmse(x, y), rtol=2e-3)
    assert s32.astype(jnp.float64).W[1].dtype == jnp.float64


def test_validation_split_and_explicit_validation():
    x, y = _data(n=50)
    kw = dict(optimizer=optax.adam(0.02), steps=20, chunk=5, seeds=2)
    split = hjax.train_sweep(x, y, (3, 6), 0.3, validation=0.2, **kw)
    assert split.validation_index.shape == (10,)
    assert split.val_rmse.shape == (4, 2, 1, 2) and split.val_steps == (5, 10, 15, 20)
    xv, yv = x[np.asarray(split.validation_index)], y[np.asarray(split.validation_index)]
    np.testing.assert_allclose(split.val_rmse[-1], split.rmse(xv, yv), rtol=1e-12)
    explicit = hjax.train_sweep(x[:40], y[:40], (3, 6), 0.3, validation=(x[40:], y[40:]), **kw)
    np.testing.assert_allclose(explicit.val_rmse[-1], explicit.rmse(x[40:], y[40:]), rtol=1e-12)


def test_checkpoint_resumes_after_interruption(tmp_path, monkeypatch):
    x, y = _data(n=32)
    kw = dict(optimizer=optax.adam(0.02), steps=12, chunk=3, seeds=2, validation=0.25)
    reference = hjax.train_sweep(x, y, (3, 6), 0.3, **kw)
    path = tmp_path / "sweep.ckpt"
    real, calls = train_module._train_chunk, []

    def interrupted(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "_train_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        hjax.train_sweep(x, y, (3, 6), 0.3, checkpoint=path, **kw)
    monkeypatch.setattr(train_module, "_train_chunk", real)
    resumed = hjax.train_sweep(x, y, (3, 6), 0.3, checkpoint=path, **kw)
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(reference), strict=True):
        np.testing.assert_array_equal(a, b)
    with raises_naming("checkpoint"):  # another sweep's checkpoint is refused
        hjax.train_sweep(x, y, (3, 6), 0.4, checkpoint=path, **kw)


@pytest.mark.parametrize(
    ("argument", "change"),
    [
        ("widths", dict(widths=[0, 3])),
        ("widths", dict(widths=[3, 3])),
        ("eps", dict(eps=-0.1)),
        ("eps", dict(eps=np.ones((2, 3)))),
        ("eps", dict(eps=np.nan)),
        ("steps", dict(steps=0)),
        ("seeds", dict(seeds=[1, 1])),
        ("batch_size", dict(batch_size=100)),
        ("validation", dict(validation=1.5)),
        ("x", dict(x=np.ones(20))),
        ("y", dict(y=np.ones(19))),
        ("x", dict(x=np.full((20, 2), np.inf))),
        ("init_scale", dict(init_scale=(-1.0, 0.3))),
        ("chunk", dict(chunk=0)),
    ],
)
def test_bad_arguments_are_named(argument, change):
    x, y = _data(n=20)
    args = dict(x=x, y=y, widths=(3, 5), eps=0.1, optimizer=optax.adam(0.01), steps=2)
    args.update(change)
    with raises_naming(argument):
        hjax.train_sweep(**args)


def test_bad_optimizer_and_lookups_are_named():
    x, y = _data(n=20)
    with pytest.raises(TypeError, match=r"(`optimizer`|'optimizer')"):
        hjax.train_sweep(x, y, (3,), 0.1, optimizer="adam", steps=2)
    sweep = hjax.train_sweep(x, y, (3,), 0.1, optimizer=optax.adam(0.01), steps=2)
    for argument, call in [
        ("seed", lambda: sweep.layer(5, 3)),
        ("width", lambda: sweep.layer(0, 4)),
        ("eps_index", lambda: sweep.layer(0, 3, 2)),
    ]:
        with raises_naming(argument):
            call()


def test_distributed_over_two_processes_equals_one_process(tmp_path):
    """Seeds split over 2 jax.distributed CPU processes (gloo): both return the whole sweep,
    equal to the single-process one; each process checkpoints to its own file."""
    helper, results = run_two_processes("train", tmp_path, str(tmp_path / "ckpt"))
    args, kwargs = helper.train_arguments()
    single = hjax.train_sweep(*args, **kwargs)
    for i, got in enumerate(results):
        assert int(got["process_count"]) == 2
        assert tuple(got["seeds"]) == single.seeds == (0, 1, 2)
        for k in range(len(single.widths)):
            np.testing.assert_allclose(got[f"W{k}"], single.W[k], rtol=0, atol=1e-12)
            np.testing.assert_allclose(got[f"b{k}"], single.b[k], rtol=0, atol=1e-12)
        np.testing.assert_allclose(got["train_loss"], single.train_loss, rtol=1e-12)
        np.testing.assert_allclose(got["val_rmse"], single.val_rmse, rtol=1e-12)
        assert (tmp_path / f"ckpt.process{i}").exists()

"""Gradient methods for a deep ResNet = Euler-discretised neural ODE: time and memory.

``python -m benchmarks.adjoints [--quick] [--depth L] [--dim d] [--batch B] [--repeats R]``

One network, one loss, five ways to get ``∂Φ/∂θ`` (THEORY §7):

* ``jax.grad``: reverse-mode autodiff through the ``lax.scan`` of the forward pass;
* ``costate_backward``: the explicit Pontryagin co-state recursion
  (:func:`hjax.costate.costate_backward`) after :func:`hjax.costate.euler_forward`;
* diffrax ``RecursiveCheckpointAdjoint`` (default checkpoints, and one checkpoint per step),
  ``BacksolveAdjoint`` (continuous adjoint) and ``DirectAdjoint``, on the neural ODE
  ``ẋ = f(x, θ(t))`` with ``θ`` piecewise constant over the layers, solved by Euler with
  ``dt = h`` — the same ResNet, so the discrete methods agree to round-off and
  ``BacksolveAdjoint`` differs by its ``O(h)`` gap.

The block is an MLP ``f(x, θ_l) = W2 tanh(W1 x + b1) + b2`` (width = d) on a batch of B
states (the state is ``(B, d)``). Time is the median wall-clock of repeats after the first
(compiling) call. Memory is XLA's compiled estimate, ``jax.jit(...).lower(...).compile()
.memory_analysis()``: temporaries + outputs (arguments — the parameters — are the same for
every method and reported apart). Ratios are relative to ``jax.grad`` in the same run.
Runs on the default JAX device (CPU or GPU) unchanged. Results go to
``results/benchmarks/adjoints.json`` (:class:`hjax.runner.Runner`: atomic, with provenance;
``--resume`` keeps the methods already measured).
"""

import argparse
import statistics
import sys
import time

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from hjax.costate import costate_backward, euler_forward, ode_gradient
from hjax.runner import ResultsError, Runner

T = 1.0


def _block(x, th):
    return jnp.tanh(x @ th["W1"].T + th["b1"]) @ th["W2"].T + th["b2"]


def _loss(x):
    return 0.5 * jnp.mean(jnp.sum(x**2, axis=-1))


def _problem(depth: int, dim: int, batch: int, dtype):
    rng = np.random.default_rng(0)
    scale = 1.0 / np.sqrt(dim)
    theta = {
        "W1": rng.normal(size=(depth, dim, dim)) * scale,
        "b1": rng.normal(size=(depth, dim)) * 0.1,
        "W2": rng.normal(size=(depth, dim, dim)) * scale,
        "b2": rng.normal(size=(depth, dim)) * 0.1,
    }
    theta = {k: jnp.asarray(v, dtype) for k, v in theta.items()}
    x0 = jnp.asarray(rng.normal(size=(batch, dim)), dtype)
    return theta, x0


def _methods(depth: int, x0):
    h = T / depth

    def grad_unrolled(theta):
        return jax.grad(lambda th: _loss(euler_forward(_block, th, x0, h)[-1]))(theta)

    def costate(theta):
        xs = euler_forward(_block, theta, x0, h)
        return costate_backward(_block, theta, xs, jax.grad(_loss)(xs[-1]), h)[1]

    def diffrax_method(adjoint):
        def run(theta):
            return ode_gradient(
                _block,
                theta,
                x0,
                T,
                _loss,
                adjoint=adjoint,
                solver=diffrax.Euler(),
                stepsize_controller=diffrax.ConstantStepSize(),
                dt0=h,
                path="piecewise",
                max_steps=depth,
            )[1]

        return run

    return {
        "jax.grad (scan)": grad_unrolled,
        "costate_backward": costate,
        "diffrax recursive": diffrax_method(diffrax.RecursiveCheckpointAdjoint()),
        "diffrax recursive (L ckpts)": diffrax_method(
            diffrax.RecursiveCheckpointAdjoint(checkpoints=depth)
        ),
        "diffrax backsolve": diffrax_method(diffrax.BacksolveAdjoint()),
        "diffrax direct": diffrax_method(diffrax.DirectAdjoint()),
    }


def _memory(compiled) -> dict[str, int | None]:
    try:
        stats = compiled.memory_analysis()
    except (NotImplementedError, RuntimeError, AttributeError):
        stats = None
    if stats is None:
        return {"temp_bytes": None, "output_bytes": None, "argument_bytes": None, "bytes": None}
    temp = int(stats.temp_size_in_bytes)
    out = int(stats.output_size_in_bytes)
    return {
        "temp_bytes": temp,
        "output_bytes": out,
        "argument_bytes": int(stats.argument_size_in_bytes),
        "bytes": temp + out,
    }


def _relative_error(a, b) -> float:
    flat_a = np.concatenate([np.ravel(np.asarray(v, np.float64)) for v in jax.tree.leaves(a)])
    flat_b = np.concatenate([np.ravel(np.asarray(v, np.float64)) for v in jax.tree.leaves(b)])
    return float(np.linalg.norm(flat_a - flat_b) / np.linalg.norm(flat_b))


def _bench(fn, theta, repeats: int) -> tuple[dict, object]:
    jitted = jax.jit(fn)
    start = time.perf_counter()
    compiled = jitted.lower(theta).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(theta))
    first_s = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(theta))
        times.append(time.perf_counter() - start)
    return {
        "time_s": statistics.median(times),
        "compile_s": compile_s,
        "first_run_s": first_s,
        **_memory(compiled),
    }, out


def _fmt_bytes(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:9.2f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.adjoints", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shallow network, few repeats")
    parser.add_argument("--depth", type=int, default=None, help="layers L (default 1024)")
    parser.add_argument("--dim", type=int, default=None, help="state dimension d (default 64)")
    parser.add_argument("--batch", type=int, default=None, help="states per batch B")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", default="results/benchmarks/adjoints.json")
    parser.add_argument("--resume", action="store_true", help="keep the methods measured")
    args = parser.parse_args(argv)

    depth = args.depth or (128 if args.quick else 1024)
    dim = args.dim or (32 if args.quick else 64)
    batch = args.batch or (4 if args.quick else 16)
    repeats = args.repeats or (3 if args.quick else 7)
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    theta, x0 = _problem(depth, dim, batch, dtype)

    params = sum(int(np.prod(v.shape)) for v in theta.values())
    config = {
        "quick": args.quick,
        "depth": depth,
        "dim": dim,
        "batch": batch,
        "parameters": params,
        "T": T,
        "h": T / depth,
        "repeats": repeats,
        "dtype": jnp.dtype(dtype).name,
        "block": "f(x, θ_l) = W2 tanh(W1 x + b1) + b2, state (B, d)",
        "timing": "median wall-clock of repeats after compilation and a first run",
        "memory": "XLA compiled memory_analysis(): temp + output bytes (arguments apart)",
    }
    try:
        run = Runner(args.out, kind="benchmarks.adjoints", config=config, resume=args.resume)
    except ResultsError as e:
        print(f"python -m benchmarks.adjoints: {e}", file=sys.stderr)
        return 2
    methods = _methods(depth, x0)
    reference = jax.jit(methods["jax.grad (scan)"])(theta)

    def measure(name: str) -> dict:
        result, grad = _bench(methods[name], theta, repeats)
        return {**result, "rel_err_vs_jax_grad": _relative_error(grad, reference)}

    results = run.run(list(methods), measure)

    base = results["jax.grad (scan)"]
    for r in results.values():
        r["time_ratio_vs_jax_grad"] = r["time_s"] / base["time_s"]
        r["memory_ratio_vs_jax_grad"] = (
            None if r["bytes"] is None or not base["bytes"] else r["bytes"] / base["bytes"]
        )

    header = (
        f"{'method':<28} {'time':>11} {'x grad':>7} {'temp+out mem':>13} {'x grad':>7} "
        f"{'compile':>8} {'rel err':>9}"
    )
    print(f"\nL = {depth}, d = {dim}, B = {batch}, {jnp.dtype(dtype).name}, {jax.devices()[0]}")
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        mem_ratio = r["memory_ratio_vs_jax_grad"]
        print(
            f"{name:<28} {r['time_s'] * 1e3:8.2f} ms {r['time_ratio_vs_jax_grad']:6.2f}x "
            f"{_fmt_bytes(r['bytes']):>13} "
            f"{'n/a' if mem_ratio is None else f'{mem_ratio:6.2f}x':>7} "
            f"{r['compile_s']:7.2f}s {r['rel_err_vs_jax_grad']:9.1e}"
        )
    print(f"wrote {run.save(benchmark='adjoints')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

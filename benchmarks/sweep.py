"""Throughput of ``hopf_cole_sweep`` against the naive per-width sweep.

``python -m benchmarks.sweep [--quick] [--points P] [--point-chunk C] [--repeats R]``

A quadrature sweep as used for Theorem 7.1's claims (iii)–(iv): d = 2, N = 2^14 nested
atoms on [-1, 1]^2 (equal weights vol/n for the prefix of length n), Lipschitz data
g(y) = |y|_1, E = 32 viscosities (eps = 0 and 31 log-spaced values in [1e-3, 1]), and two
width grids up to N = 2^14: geometric (2^5, …, 2^14; 10 widths) and linear (1024·k,
k = 1…16; 16 widths). Throughput is E·P·N / time in atom-evaluations per second (median
of repeats, after compilation). The baseline calls ``jax.jit(jax.vmap(hopf_cole))`` over
eps separately for each width (one compiled function per width); its speed-up ratio is
measured in the same run, and the two results are compared to guard against a fast but
wrong sweep. Results go to ``results/benchmarks/sweep.json`` with provenance.
"""

import argparse
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from hjax import hopf_cole, hopf_cole_sweep
from hjax.runner import ResultsError, Runner

N_ATOMS = 2**14
N_EPS = 32
D = 2
T = 0.5
WIDTH_GRIDS = {
    "geometric": tuple(2**k for k in range(5, 15)),
    "linear": tuple(1024 * k for k in range(1, 17)),
}


def _problem(n_points: int, dtype):
    rng = np.random.default_rng(0)
    y = rng.uniform(-1.0, 1.0, size=(N_ATOMS, D))
    x = rng.uniform(-0.8, 0.8, size=(n_points, D))
    g = np.abs(y).sum(axis=-1)
    log_vol_per_atom = np.full(N_ATOMS, np.log(2.0**D / N_ATOMS))
    eps = np.concatenate([[0.0], np.logspace(-3, 0, N_EPS - 1)])
    return tuple(jnp.asarray(a, dtype) for a in (x, y, g, log_vol_per_atom, eps))


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _timed_first_call(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - start, out


def _bench_grid(widths, problem, point_chunk, repeats):
    x, y, g, log_w, eps = problem
    t = jnp.asarray(T, x.dtype)

    def sweep():
        return hopf_cole_sweep(
            x,
            y,
            g,
            t,
            eps,
            widths,
            log_w=log_w,
            normalized=True,
            renormalize_prefix=True,
            point_chunk=point_chunk,
        )

    # Naive: one jitted vmap-over-eps per width, quadrature weights vol/n for width n.
    per_eps = jax.jit(
        jax.vmap(
            lambda x, y, g, t, e, lw: hopf_cole(x, y, g, t, e, log_w=lw, normalized=True),
            in_axes=(None, None, None, None, 0, None),
        )
    )
    log_vol = jnp.log(jnp.asarray(2.0**D, x.dtype))

    def naive():
        outs = []
        for n in widths:
            lw = jnp.full((n,), log_vol - jnp.log(jnp.asarray(n, x.dtype)))
            outs.append(per_eps(x, y[:n], g[:n], t, eps, lw))
        return jnp.stack(outs, axis=1)

    sweep_first, u_sweep = _timed_first_call(sweep)
    naive_first, u_naive = _timed_first_call(naive)
    sweep_s = _median_time(sweep, repeats)
    naive_s = _median_time(naive, repeats)
    work = eps.shape[0] * x.shape[0] * widths[-1]
    scale = float(jnp.max(jnp.abs(u_naive)))
    return {
        "widths": list(widths),
        "n_widths": len(widths),
        "sweep_s": sweep_s,
        "naive_s": naive_s,
        "sweep_first_call_s": sweep_first,
        "naive_first_call_s": naive_first,
        "sweep_atom_evals_per_s": work / sweep_s,
        "naive_atom_evals_per_s": work / naive_s,
        "speedup": naive_s / sweep_s,
        "naive_work_over_sweep_work": sum(widths) / widths[-1],
        "max_abs_diff_vs_naive": float(jnp.max(jnp.abs(u_sweep - u_naive))),
        "max_abs_u": scale,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sweep", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few points, few repeats")
    parser.add_argument("--points", type=int, default=None, help="query points P")
    parser.add_argument("--point-chunk", type=int, default=None, help="points per chunk")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", default="results/benchmarks/sweep.json")
    parser.add_argument("--resume", action="store_true", help="keep grids already measured")
    args = parser.parse_args(argv)

    accelerator = jax.default_backend() != "cpu"
    if args.points is not None:
        n_points = args.points
    elif accelerator:
        n_points = 512 if args.quick else 4096
    else:
        n_points = 16 if args.quick else 256
    point_chunk = args.point_chunk or (512 if accelerator else 32)
    repeats = args.repeats or (3 if args.quick else 7)
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    problem = _problem(n_points, dtype)

    config = {
        "quick": args.quick,
        "n_points": n_points,
        "n_atoms": N_ATOMS,
        "n_eps": N_EPS,
        "d": D,
        "t": T,
        "point_chunk": point_chunk,
        "repeats": repeats,
        "dtype": jnp.dtype(dtype).name,
        "timing": "median wall-clock of repeats after the first (compiling) call",
        "throughput_unit": "atom-evaluations/s = E*P*N / time",
    }
    try:
        run = Runner(args.out, kind="benchmarks.sweep", config=config, resume=args.resume)
    except ResultsError as e:
        print(f"python -m benchmarks.sweep: {e}", file=sys.stderr)
        return 2
    results = run.run(
        list(WIDTH_GRIDS),
        lambda name: _bench_grid(WIDTH_GRIDS[name], problem, point_chunk, repeats),
    )
    for name, r in results.items():
        print(
            f"{name:>9} W={r['n_widths']:2d}: sweep {r['sweep_s'] * 1e3:9.2f} ms "
            f"({r['sweep_atom_evals_per_s']:.3e} atom-evals/s), naive {r['naive_s'] * 1e3:9.2f} ms "
            f"({r['naive_atom_evals_per_s']:.3e}/s): speed-up {r['speedup']:.2f}x "
            f"(work ratio {r['naive_work_over_sweep_work']:.2f}); "
            f"first call {r['sweep_first_call_s']:.2f} s vs {r['naive_first_call_s']:.2f} s; "
            f"max |diff| {r['max_abs_diff_vs_naive']:.1e}",
            flush=True,
        )
    print(f"wrote {run.save(benchmark='sweep')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

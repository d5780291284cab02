r"""Training sweeps: hjax against the reference's NumPy loop, and the cost of packing widths.

``python -m benchmarks.train [--quick] [--dims 1] [--steps S] [--reference-steps R]``

Two measurements, each a ratio taken within one run on the same machine:

1. **Experiment B against the reference loop.** For each dimension in ``--dims`` (default
   d = 1), the whole grid of experiment B — widths, 5 seeds, ``S`` full-batch Adam steps
   (3000), 4000 training points, eps = N^(−1/d), float64 — is trained with one call of
   :func:`hjax.train_sweep` (wall clock, compilation included). The reference's loop
   (``benchmarks/_reference_loop.py``, NumPy, one network at a time) is timed for ``R``
   steps of one seed at each width; its cost per step is constant, so its time for the grid
   is ``Σ_N (time per step at N) × S × seeds``. The ratio is that estimate over hjax's
   measured time. Both start from the same initial networks; the first ``R`` training
   losses of one seed are compared to check that both train the same thing. The grid is
   also trained in float32 by hjax (the reference has no such option): its time and ratio,
   and the largest relative gap of its final training RMSEs to float64's; with several
   dimensions, the totals for them together.
2. **Packing widths.** One compiled step of the packed sweep (all widths in one call, seeds
   vmapped) against the sum of one step of each width trained alone (same seeds): the
   ratio is the overhead of training the widths together (1.0 = none; padding every width
   to the largest would cost ``K·N_max / Σ N`` instead).

Results go to ``results/benchmarks/train.json``.
"""

import argparse
import statistics
import sys
import time

import jax
import numpy as np
import optax

import hjax
from benchmarks._reference_loop import reference_train
from hjax.runner import ResultsError, Runner

WIDTHS = {
    1: (10, 25, 50, 100, 200, 500),
    2: (20, 50, 100, 200, 500),
    4: (40, 100, 200, 500, 1000),
}
N_TRAIN, SEEDS, LR = 4000, 5, 0.006


def _data(d: int, n: int):
    rng = np.random.default_rng([0, d])
    x = rng.uniform(-2.0, 2.0, (n, d))
    return x, np.linalg.norm(x, axis=1)


def _initial(d: int, n: int, seed: int):
    """The initial network ``train_sweep`` draws for width ``n`` of ``seed`` (key 0)."""
    words = [int(w) for w in np.asarray(jax.random.key_data(jax.random.key(0))).ravel()]
    z = np.random.default_rng([*words, seed, n]).standard_normal((n, d + 1))
    return (0.5 / np.sqrt(d)) * z[:, :d], 0.3 * z[:, d]


def _bench_dimension(d: int, steps: int, reference_steps: int, n_train: int, seeds: int):
    widths = WIDTHS[d]
    x, y = _data(d, n_train)
    optimizer = optax.adam(LR)
    eps = hjax.scaled_eps(widths, d)

    start = time.perf_counter()
    sweep = hjax.train_sweep(x, y, widths, eps, optimizer=optimizer, steps=steps, seeds=seeds)
    jax.block_until_ready(sweep.W)
    hjax_s = time.perf_counter() - start

    # The same grid in float32 (the reference has no such option): its time, and how far its
    # final training RMSEs are from float64's.
    start = time.perf_counter()
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    sweep32 = hjax.train_sweep(x32, y32, widths, eps, optimizer=optimizer, steps=steps, seeds=seeds)
    jax.block_until_ready(sweep32.W)
    hjax32_s = time.perf_counter() - start
    final64 = np.sqrt(np.asarray(sweep.train_loss[-1], np.float64))
    final32 = np.sqrt(np.asarray(sweep32.train_loss[-1], np.float64))

    per_step, loss_gap = {}, 0.0
    hjax_losses = np.asarray(sweep.train_loss)  # (steps, S, E, K)
    for k, n in enumerate(widths):
        W0, b0 = _initial(d, n, 0)
        e = float(eps[0, k])
        start = time.perf_counter()
        _, _, ref_losses = reference_train(x, y, W0, b0, e, reference_steps, LR)
        per_step[n] = (time.perf_counter() - start) / reference_steps
        m = min(reference_steps, steps)
        ours = hjax_losses[:m, 0, 0, k]
        loss_gap = max(loss_gap, float(np.max(np.abs(ours - ref_losses[:m]) / ref_losses[:m])))
    reference_s = sum(per_step.values()) * steps * seeds
    return {
        "d": d,
        "widths": list(widths),
        "seeds": seeds,
        "steps": steps,
        "n_train": n_train,
        "hjax_s": hjax_s,
        "reference_per_step_s": {str(n): s for n, s in per_step.items()},
        "reference_s_estimated": reference_s,
        "speedup": reference_s / hjax_s,
        "hjax_float32_s": hjax32_s,
        "speedup_float32": reference_s / hjax32_s,
        "float32_max_rel_final_rmse_gap": float(np.max(np.abs(final32 - final64) / final64)),
        "max_rel_loss_gap_first_steps": loss_gap,
        "atom_evals_per_s": n_train * sum(widths) * seeds * steps / hjax_s,
    }


def _step_seconds(x, y, widths, eps, optimizer, seeds, steps, repeats):
    """Median seconds per step of a warm ``train_sweep`` (compiled by a first call)."""

    def once():
        s = hjax.train_sweep(
            x, y, widths, eps, optimizer=optimizer, steps=steps, seeds=seeds, chunk=steps
        )
        jax.block_until_ready(s.W)

    once()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        once()
        times.append(time.perf_counter() - start)
    return statistics.median(times) / steps


def _bench_packing(d: int, n_train: int, seeds: int, steps: int, repeats: int):
    widths = WIDTHS[d]
    x, y = _data(d, n_train)
    optimizer = optax.adam(LR)
    eps = hjax.scaled_eps(widths, d)
    packed = _step_seconds(x, y, widths, eps, optimizer, seeds, steps, repeats)
    alone = {
        n: _step_seconds(x, y, [n], eps[:, k : k + 1], optimizer, seeds, steps, repeats)
        for k, n in enumerate(widths)
    }
    return {
        "d": d,
        "widths": list(widths),
        "packed_step_s": packed,
        "alone_step_s": {str(n): s for n, s in alone.items()},
        "packed_over_sum_alone": packed / sum(alone.values()),
        "padding_work_ratio": len(widths) * max(widths) / sum(widths),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer steps and points")
    parser.add_argument("--dims", default="1", help="dimensions of experiment B (default 1)")
    parser.add_argument("--steps", type=int, default=None, help="Adam steps (default 3000)")
    parser.add_argument("--reference-steps", type=int, default=None, help="reference steps")
    parser.add_argument("--out", default="results/benchmarks/train.json")
    parser.add_argument("--resume", action="store_true", help="keep cases already measured")
    args = parser.parse_args(argv)
    try:
        dims = sorted({int(d) for d in args.dims.split(",")})
    except ValueError:
        parser.error(f"--dims must be comma-separated integers; got {args.dims!r}")
    if any(d not in WIDTHS for d in dims):
        parser.error(f"--dims must be a subset of {sorted(WIDTHS)}; got {dims}")
    jax.config.update("jax_enable_x64", True)  # the reference trains in float64
    steps = args.steps or (100 if args.quick else 3000)
    reference_steps = args.reference_steps or (10 if args.quick else 50)
    n_train = 1000 if args.quick else N_TRAIN
    seeds = 2 if args.quick else SEEDS
    config = {
        "quick": args.quick,
        "dims": dims,
        "steps": steps,
        "reference_steps": reference_steps,
        "n_train": n_train,
        "seeds": seeds,
        "lr": LR,
        "dtype": "float64 (reference and hjax); hjax also in float32",
        "timing": "hjax: wall clock of train_sweep incl. compilation; reference: measured "
        "seconds per step × steps × seeds",
    }
    try:
        run = Runner(args.out, kind="benchmarks.train", config=config, resume=args.resume)
    except ResultsError as e:
        print(f"python -m benchmarks.train: {e}", file=sys.stderr)
        return 2
    units = {f"reference/d={d}": d for d in dims} | {"packing/d=1": 1}

    def compute(name):
        d = units[name]
        if name.startswith("reference"):
            return _bench_dimension(d, steps, reference_steps, n_train, seeds)
        return _bench_packing(d, n_train, seeds, 10 if args.quick else 50, 3)

    results = run.run(list(units), compute)
    for name, r in results.items():
        if name.startswith("reference"):
            print(
                f"experiment B d={r['d']} ({r['seeds']} seeds × {len(r['widths'])} widths × "
                f"{r['steps']} steps): hjax {r['hjax_s']:.1f} s "
                f"({r['atom_evals_per_s']:.2e} atom-evals/s), reference loop "
                f"{r['reference_s_estimated']:.0f} s (estimated) -> {r['speedup']:.1f}x; "
                f"training losses agree to {r['max_rel_loss_gap_first_steps']:.1e} (rel.); "
                f"float32: hjax {r['hjax_float32_s']:.1f} s -> {r['speedup_float32']:.1f}x, "
                f"final training RMSEs within {r['float32_max_rel_final_rmse_gap']:.1e} "
                "(rel.) of float64",
                flush=True,
            )
        else:
            print(
                f"packing d={r['d']}: packed step {r['packed_step_s'] * 1e3:.2f} ms = "
                f"{r['packed_over_sum_alone']:.2f} × the sum of single-width steps "
                f"(padding to N_max would do {r['padding_work_ratio']:.2f}× the work)",
                flush=True,
            )
    whole = [r for name, r in results.items() if name.startswith("reference")]
    if len(whole) > 1:
        ref, f64, f32 = (
            sum(r[k] for r in whole) for k in ("reference_s_estimated", "hjax_s", "hjax_float32_s")
        )
        print(
            f"experiment B, d = {', '.join(str(r['d']) for r in whole)} together: reference "
            f"{ref:.0f} s; hjax float64 {f64:.0f} s -> {ref / f64:.1f}x, float32 {f32:.0f} s "
            f"-> {ref / f32:.1f}x",
            flush=True,
        )
    print(f"wrote {run.save(benchmark='train')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

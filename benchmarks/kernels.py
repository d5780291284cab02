"""Throughput of the blocked Hopf–Cole / LSE kernels against the device's ``exp`` limit.

``python -m benchmarks.kernels [--quick] [--sizes 1024,4096] [--dims 2,8] [--repeats R]
[--memory-size 16384] [--no-memory]``

Every atom-evaluation of ``hopf_cole``, ``hopf_lax``, ``lse_layer`` and ``hopf_cole_sweep``
costs at least one ``exp`` (or one compare, for ``hopf_lax``), so the hardware limit is
the ``exp`` throughput of the same device, measured in the same run: values/s of
``Σ_j exp(a_i b_j)`` over a ``B × N`` grid, one fused loop whose arguments are formed in
registers (no memory traffic), the best of that and ``Σ_j exp(z_ij)`` over a stored
``B × N`` array. Each kernel is timed on ``B = N`` queries × atoms (float32; d = 2 and 8;
eps = 0.3, t = 0.7, random normal data), forward and value+gradient (w.r.t. the queries,
atoms and data: ``(x, y, g)`` or ``(x, W, b)``; for the sweep the gradient is w.r.t.
``(y, g)`` over one eps and one width), and reported as atom-evaluations/s = B·N / time
(E·B·N for the sweep) and as a ratio to the ``exp`` limit. Timing: the minimum over
repeats after the compiling call (at least R of them and at least 0.25 s of calls), the
``exp`` limit measured before and after each kernel (the larger of the two), which makes
the ratios robust to other load on a shared machine.

Memory: the gradient of ``Σ hopf_cole`` w.r.t. ``(y, g)`` at ``B = N = 16384``, d = 8,
float32, runs in a fresh subprocess that reports its peak resident set size
(``VmHWM`` of ``/proc/self/status`` on Linux, else ``ru_maxrss``, which survives the exec
of a forked child and so only bounds the peak from above) and that of importing jax and
hjax alone.

On the CPU every kernel here runs the fused kernels of :mod:`hjax._native` (``hopf_lax``
their eps = 0 branch); the report says whether they were available (``HJAX_NATIVE=0``
measures the blocked XLA kernels instead).

Targets (issue 8, item 1): forward ≥ 0.5 of the ``exp`` limit and value+gradient ≥ 0.25
for ``B, N ≥ 1024`` (float32), peak RSS ≤ 2 GB for the memory case; each is reported as
PASS/FAIL (a benchmark reports, it does not assert). Runs on the default JAX device (CPU
or GPU) unchanged. Results go to ``results/benchmarks/kernels.json``
(:class:`hjax.runner.Runner`: atomic, with provenance; ``--resume`` keeps finished cases).
"""

import argparse
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from hjax import _native, hopf_cole, hopf_cole_sweep, hopf_lax, lse_layer
from hjax.runner import ResultsError, Runner

T = 0.7
EPS = 0.3
FORWARD_TARGET = 0.5
VALUE_GRAD_TARGET = 0.25
RSS_TARGET_BYTES = 2 * 10**9
KERNELS = ("hopf_cole", "hopf_lax", "lse_layer", "hopf_cole_sweep")

_MEMORY_SCRIPT = """
import resource, sys
import jax, jax.numpy as jnp, numpy as np
import hjax
def peak_kib():
    # VmHWM (this process's high-water mark) where Linux has it: ru_maxrss survives the
    # exec of a forked child, so it is only an upper bound, the parent's RSS at the fork.
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
base = peak_kib()
n, d = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
x, y = (jnp.asarray(rng.standard_normal((n, d)), jnp.float32) for _ in range(2))
g = jnp.asarray(rng.standard_normal(n), jnp.float32)
loss = lambda y, g: jnp.sum(hjax.hopf_cole(x, y, g, 0.7, 0.3))
dy, dg = jax.jit(jax.grad(loss, argnums=(0, 1)))(y, g)
ok = bool(jnp.all(jnp.isfinite(dy)) & jnp.all(jnp.isfinite(dg)))
peak = peak_kib()
print(base * 1024, peak * 1024, int(ok), float(jnp.sum(dg)))
"""


def _min_time(fn, args, repeats: int, min_total_s: float = 0.25) -> float:
    """The fastest of at least ``repeats`` calls, and of enough calls to fill ``min_total_s``
    (a B = N = 1024 call takes about a millisecond: a few repeats would sample the machine's
    noise, not the kernel)."""
    jax.block_until_ready(fn(*args))  # compile
    best, spent, count = float("inf"), 0.0, 0
    while count < repeats or (spent < min_total_s and count < 50 * repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        elapsed = time.perf_counter() - start
        best, spent, count = min(best, elapsed), spent + elapsed, count + 1
    return best


def _exp_limit(n: int, repeats: int, dtype) -> float:
    """Best ``exp`` values/s on a ``n × n`` grid: in-register arguments or a stored array."""
    rng = np.random.default_rng(1)
    a = jnp.asarray(rng.uniform(-1, 1, n), dtype)
    b = jnp.asarray(rng.uniform(-1, 1, n), dtype)
    z = jnp.asarray(rng.uniform(-1, 1, (n, n)), dtype)
    outer = jax.jit(lambda a, b: jnp.sum(jnp.exp(a[:, None] * b[None, :]), axis=-1))
    stored = jax.jit(lambda z: jnp.sum(jnp.exp(z), axis=-1))
    return n * n / min(_min_time(outer, (a, b), repeats), _min_time(stored, (z,), repeats))


def _problem(n: int, d: int, dtype):
    rng = np.random.default_rng(0)
    x, y = (jnp.asarray(rng.standard_normal((n, d)), dtype) for _ in range(2))
    return x, y, jnp.asarray(rng.standard_normal(n), dtype)


def _functions(name: str, dtype):
    """``(forward(x, y, g), value_and_grad(x, y, g), evaluations per B·N)``."""
    t, eps = jnp.asarray(T, dtype), jnp.asarray(EPS, dtype)
    if name == "hopf_cole":
        f = lambda x, y, g: hopf_cole(x, y, g, t, eps)
    elif name == "hopf_lax":
        f = lambda x, y, g: hopf_lax(x, y, g, t)
    elif name == "lse_layer":
        f = lambda x, y, g: lse_layer(x, y, g, eps)  # (W, b) = (y, g)
    else:
        eps_grid = jnp.asarray([EPS], dtype)
        f = lambda x, y, g: hopf_cole_sweep(x, y, g, t, eps_grid, [y.shape[0]])[0, 0]
    forward = jax.jit(f)
    argnums = (1, 2) if name == "hopf_cole_sweep" else (0, 1, 2)
    value_grad = jax.jit(jax.value_and_grad(lambda *a: jnp.sum(f(*a)), argnums=argnums))
    return forward, value_grad


def _bench_case(name: str, n: int, d: int, repeats: int, dtype) -> dict:
    args = _problem(n, d, dtype)
    forward, value_grad = _functions(name, dtype)
    work = n * n
    limit_before = _exp_limit(n, repeats, dtype)
    fwd_s = _min_time(forward, args, repeats)
    vg_s = _min_time(value_grad, args, repeats)
    limit = max(limit_before, _exp_limit(n, repeats, dtype))
    finite = bool(
        all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(value_grad(*args)))
    )
    return {
        "kernel": name,
        "B": n,
        "N": n,
        "d": d,
        "exp_values_per_s": limit,
        "forward_s": fwd_s,
        "value_grad_s": vg_s,
        "forward_atom_evals_per_s": work / fwd_s,
        "value_grad_atom_evals_per_s": work / vg_s,
        "forward_ratio": work / fwd_s / limit,
        "value_grad_ratio": work / vg_s / limit,
        "finite": finite,
    }


def _bench_memory(n: int, d: int) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, str(n), str(d)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return {"B": n, "N": n, "d": d, "error": proc.stderr[-2000:]}
    base, peak, ok, _ = proc.stdout.split()
    return {
        "B": n,
        "N": n,
        "d": d,
        "baseline_rss_bytes": int(base),
        "peak_rss_bytes": int(peak),
        "finite": bool(int(ok)),
        "pass": int(peak) <= RSS_TARGET_BYTES,
    }


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kernels", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="B = N = 1024 only, few repeats")
    parser.add_argument("--sizes", default=None, help="comma-separated B = N (default 1024,4096)")
    parser.add_argument("--dims", default="2,8", help="comma-separated dimensions d")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--memory-size", type=int, default=16384, help="B = N of the RSS case")
    parser.add_argument("--no-memory", action="store_true", help="skip the RSS case")
    parser.add_argument("--out", default="results/benchmarks/kernels.json")
    parser.add_argument("--resume", action="store_true", help="keep cases already measured")
    args = parser.parse_args(argv)

    sizes = [int(s) for s in (args.sizes or ("1024" if args.quick else "1024,4096")).split(",")]
    dims = [int(s) for s in args.dims.split(",")]
    repeats = args.repeats or (3 if args.quick else 7)
    dtype = jnp.float32
    config = {
        "quick": args.quick,
        "sizes": sizes,
        "dims": dims,
        "repeats": repeats,
        "dtype": "float32",
        "t": T,
        "eps": EPS,
        "memory_size": None if args.no_memory else args.memory_size,
        "device": str(jax.devices()[0]),
        "fused_cpu_kernels": _native.status() if jax.default_backend() == "cpu" else "n/a",
        "timing": "minimum wall-clock of repeats after the compiling call",
        "throughput_unit": "atom-evaluations/s = B*N / time; exp limit in values/s",
        "targets": {
            "forward_ratio": FORWARD_TARGET,
            "value_grad_ratio": VALUE_GRAD_TARGET,
            "peak_rss_bytes": RSS_TARGET_BYTES,
        },
    }
    try:
        run = Runner(args.out, kind="benchmarks.kernels", config=config, resume=args.resume)
    except ResultsError as e:
        print(f"python -m benchmarks.kernels: {e}", file=sys.stderr)
        return 2
    cases = {f"{k}/n{n}/d{d}": (k, n, d) for n in sizes for d in dims for k in KERNELS}
    units = list(cases) + ([] if args.no_memory else ["memory"])

    def unit(name):
        if name == "memory":
            return _bench_memory(args.memory_size, 8)
        return _bench_case(*cases[name], repeats, dtype)

    results = run.run(units, unit)
    print(
        f"device: {jax.devices()[0]} ({jax.default_backend()}), float32, min of {repeats}; "
        f"fused CPU kernels: {config['fused_cpu_kernels']}"
    )
    header = (
        f"{'kernel':>16} {'B=N':>6} {'d':>2} {'exp limit/s':>11} {'forward/s':>10} "
        f"{'ratio':>6} {'value+grad/s':>12} {'ratio':>6}"
    )
    print(header)
    all_ok = True
    for name in cases:
        r = results[name]
        fwd_ok = r["forward_ratio"] >= FORWARD_TARGET
        vg_ok = r["value_grad_ratio"] >= VALUE_GRAD_TARGET
        all_ok &= fwd_ok and vg_ok and r["finite"]
        print(
            f"{r['kernel']:>16} {r['B']:>6} {r['d']:>2} {r['exp_values_per_s']:11.3e} "
            f"{r['forward_atom_evals_per_s']:10.3e} {r['forward_ratio']:6.2f} "
            f"{_verdict(fwd_ok)} {r['value_grad_atom_evals_per_s']:12.3e} "
            f"{r['value_grad_ratio']:6.2f} {_verdict(vg_ok)}",
            flush=True,
        )
    print(f"targets: forward >= {FORWARD_TARGET}, value+grad >= {VALUE_GRAD_TARGET} of exp")
    if "memory" in results:
        m = results["memory"]
        if m.get("error"):
            print(f"memory case failed: {m['error']}")
            all_ok = False
        else:
            all_ok &= m["pass"] and m["finite"]
            print(
                f"grad (y, g) of hopf_cole, B = N = {m['B']}, d = {m['d']}: peak RSS "
                f"{m['peak_rss_bytes'] / 1e9:.2f} GB (importing jax + hjax: "
                f"{m['baseline_rss_bytes'] / 1e9:.2f} GB), limit "
                f"{RSS_TARGET_BYTES / 1e9:.0f} GB: {_verdict(m['pass'])}"
            )
    print(f"overall: {_verdict(all_ok)}")
    print(f"wrote {run.save(benchmark='kernels', all_pass=all_ok)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

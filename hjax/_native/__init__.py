r"""Fused CPU kernels for the affine log-sum-exp, as JAX primitives (XLA FFI).

.. math::

    \mathrm{lse}_i = \varepsilon \log \sum_j \exp\big((x_i\cdot W_j + b_j)/\varepsilon\big),
    \qquad \mathrm{lse}_i = \max_j (x_i\cdot W_j + b_j) \;\; (\varepsilon = 0),

for ``x`` ``(B, k)``, ``W`` ``(N, k)``, ``b`` ``(N,)`` (``b_j = -inf`` masks atom j) and a
0-d ``eps >= 0`` — the value of :func:`hjax.lse_layer` and, with ``x̃ = x − c``,
``W = ỹ/t``, ``b = −|ỹ|²/(2t) − g``, of the Hopf–Cole solution (Thm 4.1; the row term
``−|x̃|²/(2t)`` is added outside). XLA:CPU needs a pass over a block of logits for the max
and another for the exp-sum, each costing about as much as the exps, and reverse mode
several more; ``affine_lse.cc`` takes the atoms in L1-sized blocks, forms the logits in
registers, sums the exps against a running max (online log-sum-exp), and its backward
reuses the forward's log-sum-exp
(``π_ij = e^{(z_ij − lse_i)/eps}``, no max pass). Memory is ``O(B·k + N·k·cores)`` in every
mode.

Three primitives, with the derivative rules that make every JAX transformation work:

* ``lse_p(x, W, b, eps) -> (lse, lo, H)``: ``lo`` the rounding error of ``lse`` (so that
  ``lse + lo`` holds it to twice the working precision: the weights
  ``e^{(z − lse − lo)/eps}`` would otherwise be off by ``ulp(lse)/eps``, 2e-3 in float32 at
  ``|lse| = 20``, eps = 1e-3; its tangent is 0), ``H`` the entropy of the Gibbs weights
  (computed only when asked, ``entropy=True``, for the eps-tangent). JVP (Thm 3.1, Prop
  F.1): ``d lse = contract(dx, dW, db) + H d eps``.
* ``contract_p(x, W, b, eps, lse, lo, dx, dW, db) = Σ_j π_ij (dx_i·W_j + x_i·dW_j + db_j)``,
  linear in ``(dx, dW, db)``; its transpose is
* ``backprop_p(x, W, b, eps, lse, lo, c) = (c_i Σ_j π_ij W_j, Σ_i c_i π_ij x_i,
  Σ_i c_i π_ij)``, linear in ``c``, whose transpose is ``contract_p`` again. Its first two
  outputs are computed only where the transpose needs them (``with_dx``, ``with_dW``; else
  0): each costs a multiply-add per coordinate and atom-evaluation, as much as the logits.

So forward mode, reverse mode and their compositions run the fused kernels at first order;
the derivatives of ``contract_p``/``backprop_p`` in their non-linear arguments and of ``H``
(second order: ``jax.hessian``, d²/deps²) are those of blocked XLA expressions of the same
quantities (``_primitives.py``, with the rules),
with ``π_ij = e^{(z_ij − lse_i − lo_i)/eps}`` written in terms of the ``lse`` argument, so that
``∂π/∂lse = −π/eps`` and the chain through ``d lse`` gives ``dπ = π(dz − ⟨π, dz⟩)/eps``.
At ``eps = 0`` the weights are the argmax indicator averaged over ties and their derivative
is 0, as for :func:`hjax._kernels.gibbs_last`. ``vmap``: batching only the query rows folds
the batch into the rows; anything else maps the primitive over the batch.

A fourth kernel, :func:`packed_mse`, is the training step of :func:`hjax.train_sweep`: the
least-squares losses of packed LSE networks and their gradients, one exp per
atom-evaluation.

The library is compiled on first use with ``$CXX`` (default ``g++``) for the host CPU into
``$HJAX_NATIVE_CACHE`` (default ``~/.cache/hjax``), keyed by the source, the flags, the
compiler, the jaxlib headers and the CPU, and written atomically. Where it cannot be built
(no compiler, ``HJAX_NATIVE=0``, a JAX without the extension points the rules use)
:func:`available` is false, a warning says why once, and
the callers keep the XLA kernels.
"""

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .._types import Array

_SOURCE = Path(__file__).with_name("affine_lse.cc")
_FLAGS = ("-O3", "-march=native", "-std=c++17", "-fPIC", "-pthread", "-w")
#: One translation unit per dtype (``-DHJAX_DTYPE=…``), compiled in parallel, then linked.
_DTYPE_UNITS = ("32", "64")
_TARGETS = ("hjax_lse", "hjax_contract", "hjax_backprop", "hjax_packed_mse")
_SUFFIX = {jnp.dtype(jnp.float32): "f32", jnp.dtype(jnp.float64): "f64"}

_lock = threading.Lock()
_state: dict = {}


def _cpu_key() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags"))][:2]
        return "".join(lines)
    except OSError:
        return platform.processor() or platform.machine()


def _build() -> Path:
    """Compile ``affine_lse.cc`` (or reuse the cached library); returns its path."""
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        raise RuntimeError(f"no C++ compiler {cxx!r} on PATH (set $CXX)")
    include = jax.ffi.include_dir()
    digest = hashlib.sha256()
    for part in (
        _SOURCE.read_bytes(),
        " ".join((*_FLAGS, *_DTYPE_UNITS)).encode(),
        cxx.encode(),
        include.encode(),
        jax.__version__.encode(),
        _cpu_key().encode(),
    ):
        digest.update(part)
    cache = Path(os.environ.get("HJAX_NATIVE_CACHE") or Path.home() / ".cache" / "hjax")
    target = cache / f"affine_lse-{digest.hexdigest()[:16]}.so"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name, suffix=".tmp", dir=cache)
    os.close(fd)
    objects = [f"{tmp}.f{bits}.o" for bits in _DTYPE_UNITS]
    compiles = [
        [cxx, *_FLAGS, f"-DHJAX_DTYPE={bits}", "-I", include, "-c", str(_SOURCE), "-o", obj]
        for bits, obj in zip(_DTYPE_UNITS, objects, strict=True)
    ]
    procs: list[subprocess.Popen] = []
    try:
        for cmd in compiles:
            procs.append(
                subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            )
        for cmd, proc in zip(compiles, procs, strict=True):
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
        link = [cxx, "-shared", "-pthread", *objects, "-o", tmp]
        proc = subprocess.run(link, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(link)} failed:\n{proc.stderr[-2000:]}")
        os.replace(tmp, target)
    finally:
        for proc in procs:  # a failed unit: do not leave the other compiling
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for path in (tmp, *objects):
            if os.path.exists(path):
                os.remove(path)
    return target


def _load() -> None:
    lib = ctypes.cdll.LoadLibrary(str(_build()))
    for name in _TARGETS:
        for suffix in _SUFFIX.values():
            symbol = f"{name}_{suffix}"
            jax.ffi.register_ffi_target(
                symbol, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu"
            )


def available() -> bool:
    """Whether the fused CPU kernels are built and registered (built on the first call)."""
    with _lock:
        if "ok" not in _state:
            if os.environ.get("HJAX_NATIVE", "1") == "0":
                _state.update(ok=False, why="disabled by HJAX_NATIVE=0")
            else:
                try:
                    _load()
                    from . import _primitives  # noqa: F401 - registers the rules

                    _state.update(ok=True, why="")
                except Exception as e:  # noqa: BLE001 - any failure means: keep XLA
                    _state.update(ok=False, why=f"{type(e).__name__}: {e}")
                    warnings.warn(
                        "hjax: the fused CPU kernels are unavailable, using the XLA kernels "
                        f"({_state['why']})",
                        RuntimeWarning,
                        stacklevel=2,
                    )
        return _state["ok"]


def status() -> str:
    """``"available"`` or why the fused CPU kernels are not used."""
    return "available" if available() else _state["why"]


def usable(dtype) -> bool:
    """Whether a computation in ``dtype`` traced now would run the fused kernels: float32
    or float64, the default backend is the CPU, and the library is :func:`available`."""
    return jnp.dtype(dtype) in _SUFFIX and jax.default_backend() == "cpu" and available()


def affine_lse(x: Array, W: Array, b: Array, eps: Array) -> Array:
    """``eps log Σ_j exp((x_i·W_j + b_j)/eps)`` (``max`` at eps = 0), ``x`` ``(B, k)``."""
    from ._primitives import lse_p

    return lse_p.bind(x, W, b, eps, entropy=False)[0]


def packed_mse(
    x: Array, y: Array, W: Array, b: Array, eps: Array, widths: tuple[int, ...]
) -> tuple[Array, Array, Array]:
    r"""Least squares of packed LSE networks and its gradient, in one fused pass.

    Segment ``s`` of the atoms (``widths[s]`` consecutive rows of ``W``, ``b``) is a network
    ``f_s(x) = lse(W_s x + b_s, eps_s)``; returns the losses ``L_s = mean_i (f_s(x_i) −
    y_i)²`` ``(S,)`` and ``(∂L_s/∂W_s, ∂L_s/∂b_s)`` stacked like ``W`` and ``b``:
    ``∂L_s/∂b_j = Σ_i g_is π_ij``, ``∂L_s/∂W_j = Σ_i g_is π_ij x_i`` with
    ``g_is = 2(f_s(x_i) − y_i)/B`` and the Gibbs weights ``π`` (THEORY §0: ``∇_z lse = π``),
    uniform on the ties at eps = 0. One exp per atom-evaluation (the training step of
    :func:`hjax.train_sweep`; not differentiable itself). ``vmap`` maps it sequentially.
    """
    if not available():
        raise RuntimeError(f"hjax: the fused CPU kernels are unavailable: {status()}")
    offsets = np.cumsum((0, *widths)).astype(np.int32)
    out = (
        jax.ShapeDtypeStruct((len(widths),), x.dtype),
        jax.ShapeDtypeStruct(W.shape, x.dtype),
        jax.ShapeDtypeStruct(b.shape, x.dtype),
    )
    call = jax.ffi.ffi_call(
        f"hjax_packed_mse_{_SUFFIX[jnp.dtype(x.dtype)]}", out, vmap_method="sequential"
    )
    return call(x, y, W, b, eps, jnp.asarray(offsets))

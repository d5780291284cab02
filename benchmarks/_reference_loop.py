r"""A faithful NumPy re-implementation of the reference's training loop (experiment B).

Written for the benchmark (``benchmarks/train.py``) and as an independent check of
:func:`hjax.train_sweep` (``tests/test_train.py``): the same algorithm the authors' NumPy code
runs, one network at a time —

* forward ``f = lse(xWᵀ + b, eps)`` (row max shift), then the Gibbs weights
  ``π = softmax((xWᵀ + b)/eps)`` *recomputed* from the logits (the reference evaluates the
  layer and its weights in two separate passes, so two exponentials per atom-evaluation);
* the closed-form MSE gradient ``∂L/∂W = (2/n) (r ⊙ π)ᵀ x``, ``∂L/∂b = (2/n) Σ_i r_i π_i``,
  ``r = f − y``;
* Adam (β = (0.9, 0.999), ε̂ = 1e-8, bias-corrected), float64;
* initialisation ``W ~ N(0, (0.5/√d)²)``, ``b ~ N(0, 0.3²)``.

Not part of the library: hjax trains with :func:`hjax.train_sweep`.
"""

import numpy as np

__all__ = ["reference_init", "reference_train"]


def reference_init(rng: np.random.Generator, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference's initialisation, drawn as ``standard_normal((n, d + 1))`` columns."""
    z = rng.standard_normal((n, d + 1))
    return (0.5 / np.sqrt(d)) * z[:, :d], 0.3 * z[:, d]


def _lse(x, W, b, eps):
    z = x @ W.T + b
    m = z.max(axis=1, keepdims=True)
    return eps * np.log(np.exp((z - m) / eps).sum(axis=1)) + m[:, 0]


def _gibbs(x, W, b, eps):
    z = x @ W.T + b
    e = np.exp((z - z.max(axis=1, keepdims=True)) / eps)
    return e / e.sum(axis=1, keepdims=True)


def reference_train(
    x: np.ndarray,
    y: np.ndarray,
    W: np.ndarray,
    b: np.ndarray,
    eps: float,
    steps: int,
    lr: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full-batch Adam on the MSE of ``lse(xWᵀ + b, eps)``; returns ``(W, b, losses)``.

    ``losses[k]`` is the training MSE before step ``k + 1``.
    """
    W, b = np.array(W, dtype=float), np.array(b, dtype=float)
    mW, vW, mb, vb = np.zeros_like(W), np.zeros_like(W), np.zeros_like(b), np.zeros_like(b)
    n = x.shape[0]
    losses = np.empty(steps)
    for k in range(1, steps + 1):
        r = _lse(x, W, b, eps) - y
        rp = r[:, None] * _gibbs(x, W, b, eps)
        gW, gb = (2 / n) * rp.T @ x, (2 / n) * rp.sum(axis=0)
        losses[k - 1] = np.mean(r**2)
        for p, g, m, v in ((W, gW, mW, vW), (b, gb, mb, vb)):
            m *= 0.9
            m += 0.1 * g
            v *= 0.999
            v += 0.001 * g**2
            p -= lr * (m / (1 - 0.9**k)) / (np.sqrt(v / (1 - 0.999**k)) + 1e-8)
    return W, b, losses

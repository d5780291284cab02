r"""Splitting independent work across the processes of a ``jax.distributed`` run.

hjax's sweeps are embarrassingly parallel along one axis (the seeds of a training sweep, the
query points of a Hopf–Cole sweep): nothing is exchanged while they run. Across processes
(``jax.distributed.initialize`` on several hosts, or several local CPU processes with
``jax_cpu_collectives_implementation="gloo"``) each process therefore computes a strided
share of that axis with the ordinary single-process code, and the shares are gathered once
at the end with :func:`jax.experimental.multihost_utils.process_allgather`, so every process
returns the same, complete result — equal to a single-process run, since every item of the
axis is computed independently of which other items are present.

Item ``i`` of ``n`` belongs to process ``i mod P``; every process holds ``⌈n/P⌉`` slots (the
gather needs equal shapes), the missing ones filled with padding items that are computed and
dropped.
"""

import jax
import numpy as np
from jax.experimental import multihost_utils

__all__ = ["connect", "gather_strided", "process_share"]


def connect() -> None:
    """Open the processes' collectives context now, while they are in step.

    The first collective sets the context up and waits (30 s, with gloo on CPU) for every
    process to arrive; the gather at the end of a long computation may come minutes apart on
    different processes, so call this at the start of the work.
    """
    multihost_utils.process_allgather(np.zeros(1), tiled=False)


def process_share(n: int) -> tuple[list[int], int]:
    """The indices of ``range(n)`` this process computes (``i ≡ process_index (mod P)``) and
    how many padding items it must add to reach the ``⌈n/P⌉`` slots every process holds."""
    P, p = jax.process_count(), jax.process_index()
    mine = list(range(p, n, P))
    return mine, -(-n // P) - len(mine)


def gather_strided(local: np.ndarray, n: int, axis: int = 0) -> np.ndarray:
    """Every process's :func:`process_share` of an axis, gathered back into ``range(n)`` order.

    ``local`` has ``⌈n/P⌉`` entries along ``axis`` (this process's share, padded); the result
    has ``n``, identical on every process.
    """
    P = jax.process_count()
    local = np.moveaxis(np.asarray(local), axis, 0)
    gathered = np.asarray(multihost_utils.process_allgather(local, tiled=False))  # (P, slots, …)
    out = np.stack([gathered[i % P, i // P] for i in range(n)])
    return np.moveaxis(out, 0, axis)

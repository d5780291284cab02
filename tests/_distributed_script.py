"""Subprocess helper for the 2-process ``jax.distributed`` tests (test_train, test_sweep).

``python tests/_distributed_script.py MODE PORT PROCESS_ID OUT.npz [CHECKPOINT]`` joins a
2-process ``jax.distributed`` run on this machine (CPU, gloo collectives) and writes what
this process returned to ``OUT.npz``:

* ``MODE=train``: ``train_sweep(distributed=True)`` of :func:`train_arguments` (the seeds
  split across the processes, checkpoints in ``CHECKPOINT``);
* ``MODE=sweep``: ``hopf_cole_sweep(distributed=True)`` of :func:`sweep_arguments` (the
  points split across the processes).
"""

import os
import sys

os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_cpu_collectives_implementation", "gloo")

import numpy as np  # noqa: E402
import optax  # noqa: E402


def train_arguments():
    """The training sweep both the 2-process run and the test's single-process run train."""
    rng = np.random.default_rng(5)
    x = rng.uniform(-2.0, 2.0, (40, 2))
    y = np.linalg.norm(x, axis=1)
    return (x, y, (3, 7), np.array([0.1, 0.4])), dict(
        optimizer=optax.adam(0.02), steps=12, seeds=3, key=11, validation=0.25, chunk=4
    )


def sweep_arguments():
    """The Hopf–Cole sweep both runs evaluate: 7 points (an odd count, so one process pads),
    a weighted measure, a metric A and the normalization — every argument travels."""
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((7, 2)), rng.standard_normal((12, 2))
    A = np.array([[1.5, 0.3], [0.3, 0.8]])
    return (x, y, rng.standard_normal(12), 0.6, np.array([0.0, 0.2, 0.7]), (3, 8, 12)), dict(
        log_w=rng.standard_normal(12), A=A, normalized=True
    )


def main(mode: str, port: str, process_id: str, out: str, checkpoint: str = "") -> None:
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=int(process_id)
    )
    import hjax

    if mode == "train":
        args, kwargs = train_arguments()
        sweep = hjax.train_sweep(*args, **kwargs, distributed=True, checkpoint=checkpoint)
        np.savez(
            out,
            process_count=jax.process_count(),
            seeds=np.asarray(sweep.seeds),
            train_loss=np.asarray(sweep.train_loss),
            val_rmse=np.asarray(sweep.val_rmse),
            **{f"W{k}": np.asarray(W) for k, W in enumerate(sweep.W)},
            **{f"b{k}": np.asarray(b) for k, b in enumerate(sweep.b)},
        )
    else:
        args, kwargs = sweep_arguments()
        u = hjax.hopf_cole_sweep(*args, **kwargs, distributed=True)
        np.savez(out, process_count=jax.process_count(), u=np.asarray(u))
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])

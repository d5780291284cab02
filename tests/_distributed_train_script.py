"""Subprocess helper for tests/test_train.py: ``train_sweep(distributed=True)`` on 2 processes.

``python tests/_distributed_train_script.py PORT PROCESS_ID OUT.npz CHECKPOINT`` joins a
2-process ``jax.distributed`` run on this machine (CPU, gloo collectives), trains the sweep
of ``sweep_arguments()`` with the seeds split across the processes, and writes what this
process returned to ``OUT.npz``.
"""

import os
import sys

os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_cpu_collectives_implementation", "gloo")

import numpy as np  # noqa: E402
import optax  # noqa: E402


def sweep_arguments():
    """The sweep both the 2-process run and the test's single-process run train."""
    rng = np.random.default_rng(5)
    x = rng.uniform(-2.0, 2.0, (40, 2))
    y = np.linalg.norm(x, axis=1)
    return (x, y, (3, 7), np.array([0.1, 0.4])), dict(
        optimizer=optax.adam(0.02), steps=12, seeds=3, key=11, validation=0.25, chunk=4
    )


def main(port: str, process_id: str, out: str, checkpoint: str) -> None:
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=int(process_id)
    )
    import hjax

    args, kwargs = sweep_arguments()
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
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])

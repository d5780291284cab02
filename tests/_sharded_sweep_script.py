"""Subprocess helper for tests/test_sweep.py: the sharded sweep on 4 host (CPU) devices.

``python tests/_sharded_sweep_script.py IN.npz OUT.npz`` forces 4 CPU devices (the flag
must be set before jax initializes, hence a separate process), runs
``hopf_cole_sweep(..., sharded=True)`` on the inputs of ``IN.npz`` — in one call, and
chunk by chunk with progress — and writes the results, the number of devices and the
number of devices the result is spread over to ``OUT.npz``.
"""

import os
import sys

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

from hjax.sweep import hopf_cole_sweep  # noqa: E402


def main(in_path: str, out_path: str) -> None:
    data = np.load(in_path)
    args = (data["x"], data["y"], data["g"], float(data["t"]), data["eps"])
    widths = tuple(int(w) for w in data["widths"])
    kwargs = dict(log_w=data["log_w"], A=data["A"], normalized=True, renormalize_prefix=True)
    whole = hopf_cole_sweep(*args, widths, sharded=True, **kwargs)
    progress = hopf_cole_sweep(*args, widths, sharded=True, point_chunk=2, progress=True, **kwargs)
    np.savez(
        out_path,
        whole=np.asarray(whole),
        progress=np.asarray(progress),
        n_devices=len(jax.devices()),
        n_result_devices=len(whole.sharding.device_set),
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

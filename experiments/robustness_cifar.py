r"""Experiment F: experiment E's pipeline on CIFAR-10 (PCA-64, N = 128) — needs the data.

``python -m experiments.robustness_cifar --data PATH [--quick] [--out DIR] [--resume]``

No offline copy of CIFAR-10 is packaged for this project (REFERENCE.md: none was found), and
these machines cannot download. Without ``--data`` the script says so and exits 2; it never
substitutes other data. ``PATH`` is either the ``cifar-10-batches-py`` folder of the
official Python release (``data_batch_1..5``, ``test_batch``; from
https://www.cs.toronto.edu/~kriz/cifar.html) or an ``.npz`` with ``x_train, y_train,
x_test, y_test`` (pixels in [0, 255]). With the data, it runs exactly the pipeline of
:mod:`experiments.robustness_mnist` (curvature of ``p = a f + c`` against ``|a| D²/(4 eps)``,
certified radii of the class decision attacked, tightness) with PCA to d = 64, regression on
the class index 0–9 as in the reference.
"""

import pickle
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from experiments._common import entry_point, parse_args
from experiments.robustness_mnist import make_config, read_npz, run_pipeline, split_data_arg

NAME = "robustness_cifar"
PCA = 64

REFERENCE = {
    "eps": [0.1, 0.3, 1.0, 3.0, 10.0],
    "outcome": "bound never violated; 2 h CPU / 10 min GPU (paper, App. G)",
}

NO_DATA = """\
python -m experiments.robustness_cifar: CIFAR-10 is not available offline.
No offline copy of CIFAR-10 ships with this project or its dependencies, and this machine
cannot download it; experiment F is not run (nothing is substituted for it).
To run it, fetch the official Python release elsewhere, e.g.
    https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz
unpack it and pass the folder (or an .npz with x_train, y_train, x_test, y_test):
    python -m experiments.robustness_cifar --data path/to/cifar-10-batches-py
"""


def read_cifar(path: Path) -> dict[str, np.ndarray]:
    """The official ``cifar-10-batches-py`` folder (pickled batches) or an ``.npz``."""
    if path.suffix == ".npz":
        return read_npz(path)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [n for n in names if not (path / n).exists()]
    if missing:
        raise SystemExit(f"--data {path}: not a cifar-10-batches-py folder (missing {missing}).")
    batches = []
    for n in names:
        with open(path / n, "rb") as fh:
            d = pickle.load(fh, encoding="bytes")
        batches.append((np.asarray(d[b"data"], np.uint8), np.asarray(d[b"labels"], np.int64)))
    return {
        "x_train": np.concatenate([x for x, _ in batches[:5]]),
        "y_train": np.concatenate([y for _, y in batches[:5]]),
        "x_test": batches[5][0],
        "y_test": batches[5][1],
    }


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    data_path, rest = split_data_arg(argv)
    args = parse_args(NAME, __doc__, rest)
    if data_path is None:
        print(NO_DATA, file=sys.stderr, end="")
        return 2
    data = read_cifar(data_path)
    config = make_config(args.quick, f"cifar10:{data_path.name}", pca=PCA)
    return run_pipeline(NAME, args, config, data, REFERENCE)


if __name__ == "__main__":
    sys.exit(main())

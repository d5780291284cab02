"""Results on disk: written atomically (temp file + rename), with the run's provenance.

Nothing a user computed is lost: a crash mid-write leaves the previous file intact, and
every results folder records the versions and the device that produced it.
"""

import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import jax

__all__ = ["atomic_write_bytes", "atomic_write_json", "provenance", "read_json"]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (NaN/inf are written as null)."""
    text = json.dumps(_finite(obj), indent=2, ensure_ascii=False, default=_default)
    return atomic_write_bytes(path, (text + "\n").encode())


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file written by :func:`atomic_write_json`."""
    return json.loads(Path(path).read_text())


def provenance() -> dict[str, Any]:
    """Versions, device and precision of the current process, for results folders."""
    import diffrax
    import equinox
    import numpy

    from . import __version__

    devices = jax.devices()
    return {
        "hjax": __version__,
        "jax": jax.__version__,
        "equinox": equinox.__version__,
        "diffrax": diffrax.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in devices],
        "device_kind": devices[0].device_kind,
        "x64": bool(jax.config.jax_enable_x64),
    }


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if obj == obj and abs(obj) != float("inf") else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.ndarray | jax.Array):
            return _finite(np.asarray(obj).tolist())
        if isinstance(obj, np.generic):
            return _finite(obj.item())
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")

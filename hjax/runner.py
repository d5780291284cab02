r"""One results runner for ``hjax verify``, the experiments and the benchmarks.

A long computation is a list of named, independent *units* (one verify check, one
``(eps, seed)`` fit, one benchmark case). :class:`Runner` computes the units that are not
stored yet and writes the whole store to one JSON file after each of them — atomically
(temporary file, ``fsync``, rename), so an interrupted run loses at most the unit in flight
and a crash mid-write leaves the previous file intact. With ``resume=True`` it continues a
stored run, provided that run is usable:

* the file parses and has the runner's structure (otherwise :class:`ResultsError` names the
  file and says what to do: a truncated, empty or garbage file is never silently replaced);
* it was made by the same kind of job with the same configuration
  (:class:`ConfigMismatch` otherwise);
* it was made with the same hjax and JAX versions, backend and ``jax_enable_x64`` setting
  (:data:`COMPATIBILITY_KEYS`): results computed elsewhere are not mixed into this run;
* units that *crashed* are retried, never replayed as permanent failures;
* units the current run does not ask for (another ``--only`` group) are kept.

Progress goes to stderr (a ``tqdm`` bar on a terminal, one line per unit otherwise); each
unit records its seconds, so :attr:`Runner.seconds` is the total over resumed runs.

The same module holds the pieces every results folder needs: :func:`atomic_write_json`,
:func:`atomic_write_bytes`, :func:`read_json` (with clear errors), :func:`provenance` and
:func:`ensure_writable` (checked before anything is computed), :func:`format_table` for
fixed-width tables, and :func:`hjax.loglog_fit` for rates.
"""

import json
import math
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .rates import LogLogFit as LogLogFit
from .rates import loglog_fit as loglog_fit

__all__ = [
    "COMPATIBILITY_KEYS",
    "ConfigMismatch",
    "LogLogFit",
    "ResultsError",
    "Runner",
    "atomic_write_bytes",
    "atomic_write_json",
    "ensure_writable",
    "format_table",
    "loglog_fit",
    "provenance",
    "read_json",
]

#: Provenance entries that must agree for stored units to be reused by ``resume``.
COMPATIBILITY_KEYS = ("hjax", "jax", "backend", "x64")

_SCHEMA = "hjax.runner/1"


class ResultsError(RuntimeError):
    """A results file or folder that cannot be used (corrupt, from another setup, or not
    writable). The message names the path and what to do; command lines exit 2 on it."""


class ConfigMismatch(ResultsError):
    """``resume`` found results made with a different configuration."""


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------


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
    """Atomically write ``obj`` as indented JSON (NaN and ±inf are written as null)."""
    text = json.dumps(_finite(obj), indent=2, ensure_ascii=False, default=_default)
    return atomic_write_bytes(path, (text + "\n").encode())


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON results file; :class:`ResultsError` (naming the file) if it cannot be.

    An empty, truncated or garbage file — a disk that filled up, a copy cut short, a file
    edited by hand — is reported, never silently replaced.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ResultsError(f"cannot read {path}: {e.strerror or e}.") from None
    except UnicodeDecodeError:
        raise ResultsError(
            f"{path} is not a text file (corrupt?). Delete or move it, or choose another "
            "output folder, and run again."
        ) from None
    if not text.strip():
        raise ResultsError(
            f"{path} is empty (an interrupted copy or a full disk?). Delete it, or run "
            "without --resume to start over."
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ResultsError(
            f"{path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}; "
            "truncated or corrupt?). Delete or move it, or run without --resume to start over."
        ) from None


def ensure_writable(path: str | os.PathLike) -> Path:
    """Check that the file ``path`` can be written (creating its folder), before any work.

    Raises:
        ResultsError: the folder cannot be created or written, or ``path`` is a folder.
    """
    path = Path(path)
    if path.is_dir():
        raise ResultsError(f"{path} is a folder; a file path is needed there.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise ResultsError(
            f"cannot write {path}: {e.strerror or e}. Choose a writable output path."
        ) from None
    return path


def provenance() -> dict[str, Any]:
    """Versions, device and precision of the current process, for results folders."""
    import diffrax
    import equinox
    import jax
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
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _default(obj: Any) -> Any:
    import jax
    import numpy as np

    if isinstance(obj, np.ndarray | jax.Array):
        return _finite(np.asarray(obj).tolist())
    if isinstance(obj, np.generic):
        return _finite(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def _normalised(obj: Any) -> Any:
    """The JSON round trip of ``obj``: what a stored value compares equal to."""
    return json.loads(json.dumps(_finite(obj), default=_default))


# --------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------


class Runner:
    """A resumable set of named units, stored atomically in one JSON file.

    Args:
        path: the store (``results/<name>/results.json``, ``results/verify/partial.json``).
        kind: what made it (``"hjax.verify"``, ``"experiments.hessian_bound"``); resuming a
            store of another kind is refused.
        config: every parameter that determines the units' results (JSON-able).
        resume: reuse the usable units of an existing store (see the module docstring).
        label: the name shown in progress lines (default: ``kind``).

    Raises:
        ResultsError: ``path`` is not writable, or (with ``resume``) the store is corrupt,
            of another kind, or made with another version, backend or x64 setting.
        ConfigMismatch: (with ``resume``) the store has another configuration.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "results.json"
        >>> run = Runner(path, kind="demo", config={"n": 3}, resume=False, label="demo")
        >>> units = run.run(["a", "b"], lambda key: {"value": len(key)}, progress=False)
        >>> [u["value"] for u in units.values()]
        [1, 1]
        >>> again = Runner(path, kind="demo", config={"n": 3}, resume=True)
        >>> sorted(again.units)
        ['a', 'b']
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        kind: str,
        config: Mapping[str, Any],
        resume: bool,
        label: str | None = None,
    ):
        self.path = ensure_writable(path)
        self.kind = kind
        self.label = label or kind
        self.config = _normalised(dict(config))
        self.units: dict[str, dict[str, Any]] = {}
        #: units found crashed in the stored run (retried by :meth:`run`).
        self.retried: list[str] = []
        #: units this run reused from the store.
        self.resumed: list[str] = []
        self._provenance = provenance()
        if resume and self.path.exists():
            self._load()

    def _load(self) -> None:
        stored = read_json(self.path)
        if (
            not isinstance(stored, dict)
            or stored.get("schema") != _SCHEMA
            or not isinstance(stored.get("units"), dict)
        ):
            raise ResultsError(
                f"{self.path} is not a results store of hjax's runner (schema {_SCHEMA}); "
                "delete or move it, or run without --resume to start over."
            )
        if stored.get("kind") != self.kind:
            raise ResultsError(
                f"--resume: {self.path} holds results of {stored.get('kind')!r}, not "
                f"{self.kind!r}; choose another output folder."
            )
        if stored.get("config") != self.config:
            raise ConfigMismatch(
                f"--resume: {self.path} was written with a different configuration; "
                "run without --resume (to start over) or choose another output folder."
            )
        theirs = stored.get("provenance") or {}
        differ = {
            k: (theirs.get(k), self._provenance[k])
            for k in COMPATIBILITY_KEYS
            if theirs.get(k) != self._provenance[k]
        }
        if differ:
            said = ", ".join(f"{k} {a!r} there, {b!r} here" for k, (a, b) in differ.items())
            raise ResultsError(
                f"--resume: {self.path} was computed with another setup ({said}); its "
                "results cannot be mixed with this run's. Run without --resume to start "
                "over, or choose another output folder."
            )
        for key, unit in stored["units"].items():
            if isinstance(unit, dict) and unit.get("error") is None:
                self.units[key] = unit
            else:
                self.retried.append(key)

    @property
    def seconds(self) -> float:
        """Compute time of every stored unit, over this run and the runs it resumed."""
        return float(sum(u.get("seconds", 0.0) for u in self.units.values()))

    def run(
        self,
        keys: Sequence[str],
        compute: Callable[[str], Mapping[str, Any]],
        *,
        catch: bool = False,
        progress: bool = True,
    ) -> dict[str, dict[str, Any]]:
        """Compute each unit of ``keys`` not stored yet, saving the store after each.

        Args:
            keys: the units of this run, in order (other stored units are kept).
            compute: ``key -> dict`` of JSON-able results; the runner adds ``seconds``,
                ``finished_at`` and ``error`` (``None`` unless it crashed).
            catch: record an exception as a crashed unit (``error`` = the exception line,
                the traceback to stderr) and go on; otherwise re-raise after saving.
            progress: show progress on stderr.

        Returns:
            ``{key: unit}`` for ``keys``, in order.
        """
        keys = list(keys)
        if len(set(keys)) != len(keys):
            raise ValueError("`keys` must be unique.")
        todo = [k for k in keys if k not in self.units]
        self.resumed = [k for k in keys if k in self.units]
        bar = _progress(self.label, len(keys), len(self.resumed), progress)
        try:
            for i, key in enumerate(todo, len(self.resumed) + 1):
                bar.set_postfix_str(key, refresh=True)
                start = time.perf_counter()
                try:
                    result, error = dict(compute(key)), None
                except Exception as e:
                    if not catch:
                        raise
                    error = "".join(traceback.format_exception_only(type(e), e)).strip()
                    traceback.print_exc(file=sys.stderr)
                    result = {}
                seconds = time.perf_counter() - start
                self.units[key] = {
                    **result,
                    "seconds": seconds,
                    "finished_at": datetime.now(timezone.utc).isoformat(),
                    "error": error,
                }
                self.save()
                bar.update(1)
                if bar.disable and progress:
                    print(
                        f"[{self.label}] {i}/{len(keys)} {key}: {seconds:.1f} s"
                        + (f" — CRASHED: {error}" if error else ""),
                        file=sys.stderr,
                        flush=True,
                    )
        finally:
            bar.close()
        return {k: self.units[k] for k in keys}

    def save(self, **payload: Any) -> Path:
        """Write the store atomically (``payload``: extra top-level entries)."""
        return atomic_write_json(
            self.path,
            {
                "schema": _SCHEMA,
                "kind": self.kind,
                "config": self.config,
                "units": self.units,
                "seconds": self.seconds,
                **payload,
                "provenance": self._provenance,
            },
        )


def _progress(label: str, total: int, done: int, show: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=done,
        desc=label,
        unit="unit",
        file=sys.stderr,
        disable=not (show and sys.stderr.isatty()),
        leave=True,
    )


# --------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------


def format_table(
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    max_widths: Sequence[int | None] | None = None,
) -> str:
    """A plain fixed-width text table; cells longer than ``max_widths[i]`` end in ``…``.

    Example:
        >>> print(format_table(["a", "bb"], [[1, "xyz"]], max_widths=[None, 2]))
        a  bb
        -  --
        1  x…
    """
    caps = list(max_widths) if max_widths is not None else [None] * len(header)
    if len(caps) != len(header):
        raise ValueError("`max_widths` must have one entry per column.")

    def cut(text: Any, cap: int | None) -> str:
        text = str(text)
        return text if cap is None or len(text) <= cap else text[: cap - 1] + "…"

    cells = [[cut(c, cap) for c, cap in zip(r, caps, strict=True)] for r in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*cells[0]).rstrip(), "  ".join("-" * w for w in widths)]
    return "\n".join(lines + [fmt.format(*r).rstrip() for r in cells[1:]])

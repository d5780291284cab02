"""Run every benchmark: ``python -m benchmarks [--quick]``.

Each module ``benchmarks/<name>.py`` has ``main(argv) -> int`` and writes
``results/benchmarks/<name>.json`` (ratios measured within one run, with provenance).
"""

import importlib
import pkgutil
import sys

import benchmarks


def main(argv: list[str]) -> int:
    names = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name[0] != "_")
    status = 0
    for name in names:
        print(f"=== benchmarks.{name} ===", flush=True)
        status |= importlib.import_module(f"benchmarks.{name}").main(argv)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The paper's experiments as reproducible scripts: ``python -m experiments.<name>``.

Each script runs one experiment of REFERENCE.md's table with the public ``hjax`` API,
writes ``results/<name>/`` (``config.json``, ``results.json`` with provenance, a PNG
figure; all atomically), prints a summary table and exits 1 if a measured claim fails.
``--quick`` is a small setting for CI; ``--resume`` skips units already stored.
See ``experiments/README.md``.
"""

"""Benchmarks of otel-plugin-logs (issue #7): run ``python -m benchmarks`` from the repository root.

Every figure is printed next to a baseline measured in the same run on the same machine, and
the ratio between them; see ``benchmarks/README.md``.
"""

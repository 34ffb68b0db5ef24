"""FaceParse Studio's benchmarks, run from the project root as ``python -m bench.<script>``.

Shared by every script: :mod:`bench.harness` (where results go, done markers, JSON lines, the
results manifest, the machine record, the base argument parser).
"""

"""Measured figures of ecg-edge: latency, limit, end to end, throughput, memory, accuracy, ARM.

``python -m benchmarks [--quick] [--out DIR]`` runs them all and writes
``results.json`` and ``results.md``; each module prints its own table and
returns a plain dict.
"""

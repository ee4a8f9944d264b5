"""Which CPU this is: model, arch and the ISA features that pick onnxruntime's int8 kernels.

Recorded wherever figures are made (bundle manifests, benchmark results), so
that a figure says which kernels produced it: on x86, ``avx512_vnni`` /
``avx_vnni`` / ``amx`` run u8 x s8 dot products exactly, AVX2 alone goes
through ``vpmaddubsw`` (int16 pair sums); on aarch64, ``asimddp`` gives the
SDOT/UDOT kernels, plain ``neon`` the widening-multiply ones.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

# The flags looked for, as /proc/cpuinfo spells them ("amx" stands for amx_int8).
ISA_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "amx",
    "neon",
    "asimddp",
)


def _cpuinfo(text: str) -> tuple[str, set[str]]:
    model, flags, arm = "", set(), {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key in ("model name", "hardware") and not model:
            model = value
        elif key in ("flags", "features"):
            flags |= set(value.split())
        elif key in ("cpu implementer", "cpu part") and key not in arm:
            arm[key] = value  # aarch64 names no model: implementer and part identify the core
    if not model and arm:
        model = f"ARM implementer {arm.get('cpu implementer', '?')} part {arm.get('cpu part', '?')}"
    return model, flags


def cpu_info(cpuinfo: str | None = None) -> dict:
    """This machine's CPU as plain JSON: model, arch, cores and the ISA flags present.

    ``cpuinfo`` is the text of ``/proc/cpuinfo`` (read when not given; on a
    system without it only model and arch are filled). ``flags`` lists, in a
    fixed order, those of :data:`ISA_FLAGS` the CPU has; ``neon`` stands for
    aarch64's ``asimd``, ``amx`` for ``amx_int8``.

    >>> info = cpu_info("model name : Example CPU\\nflags : fpu avx2 fma avx512f\\n")
    >>> info["model"], info["flags"]
    ('Example CPU', ['avx2', 'fma', 'avx512f'])
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    model, raw = _cpuinfo(cpuinfo)
    have = set(raw)
    if "asimd" in raw:
        have.add("neon")
    if "amx_int8" in raw:
        have.add("amx")
    return {
        "model": model or platform.processor() or "unknown",
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "flags": [f for f in ISA_FLAGS if f in have],
    }


def cpu_line(info: dict | None = None) -> str:
    """One line for a table header: ``AMD EPYC 9B14 (x86_64; avx2 fma avx512f ...)``."""
    info = info or cpu_info()
    return f"{info['model']} ({info['arch']}; {' '.join(info['flags']) or 'no listed ISA flags'})"

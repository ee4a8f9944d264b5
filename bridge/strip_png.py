"""Draw a 12-lead strip on ECG paper (matplotlib; only the ``strip`` commands and the station).

Paper as printed by electrocardiographs: 25 mm/s (1 mm = 40 ms) and 10 mm/mV
(1 mm = 0.1 mV), a 1 mm grid with a heavier line every 5 mm; the standard
3 x 4 layout (I aVR V1 V4 / II aVL V2 V5 / III aVF V3 V6, 2.5 s each) with
a 10 s rhythm strip of lead II below, a 1 mV calibration pulse at the start of
each row, and the findings, heart rate and time written above. The figure is
sized in millimetres so that the PNG, printed at its dpi, is to scale.

Needs the ``station`` extra (``pip install 'ecg-edge[station]'``).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from bridge.errors import EcgEdgeError

LAYOUT = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
RHYTHM = "II"
MM_PER_S = 25.0
MM_PER_MV = 10.0
ROW_MM = 30.0  # vertical space of one row (3 mV)
LEFT_MM = 8.0  # calibration pulse
HEADER_MM = 23.0
_MM_PER_IN = 25.4


def _pyplot():  # type: ignore[no-untyped-def]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise EcgEdgeError(
            "Drawing a strip needs matplotlib: pip install 'ecg-edge[station]'"
        ) from None
    return plt


def render_strip(
    leads: Mapping[str, Sequence[float]],
    fs: float,
    *,
    title: str = "",
    lines: Sequence[str] = (),
    units_per_mv: float = 1000.0,
    dpi: int = 100,
) -> bytes:
    """PNG bytes of ``leads`` (name -> samples at ``fs`` Hz) on ECG paper.

    Samples are in ``1/units_per_mv`` mV (1000: microvolts, the strip payload;
    1: millivolts). Up to 10 s are drawn (a shorter strip fills less of the
    paper); ``title`` and ``lines`` are written at the top.
    """
    import numpy as np
    from matplotlib.collections import LineCollection

    plt = _pyplot()
    data = {k: np.asarray(v, dtype=np.float64) / units_per_mv for k, v in leads.items()}
    if not data:
        raise EcgEdgeError("Nothing to draw: the strip has no leads")
    n = min(len(v) for v in data.values())
    n = min(n, round(10.0 * fs))
    seconds = n / fs
    col_s = seconds / 4.0
    width_mm = LEFT_MM + 10.0 * MM_PER_S + 4.0
    rows = len(LAYOUT) + 1
    height_mm = HEADER_MM + rows * ROW_MM + 4.0
    fig = plt.figure(figsize=(width_mm / _MM_PER_IN, height_mm / _MM_PER_IN), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width_mm)
    ax.set_ylim(0, height_mm)
    ax.set_axis_off()
    fig.patch.set_facecolor("#fff8f6")
    # the paper: 1 mm lines, heavier every 5 mm
    grid_top = rows * ROW_MM + 2.0
    for step, color, lw in ((1.0, "#f6c9c4", 0.35), (5.0, "#e88b84", 0.8)):
        xs = np.arange(0.0, width_mm + 1e-9, step)
        ys = np.arange(0.0, grid_top + 1e-9, step)
        segs = [((x, 0.0), (x, grid_top)) for x in xs] + [((0.0, y), (width_mm, y)) for y in ys]
        ax.add_collection(LineCollection(segs, colors=color, linewidths=lw, zorder=1))
    traces = []
    labels = []

    def trace(x0_mm: float, base_mm: float, y_mv: np.ndarray) -> None:
        t_mm = x0_mm + np.arange(len(y_mv)) / fs * MM_PER_S
        y = y_mv - np.median(y_mv) if len(y_mv) else y_mv
        traces.append(np.column_stack([t_mm, base_mm + np.clip(y, -2.4, 2.4) * MM_PER_MV]))

    for r, row in enumerate((*LAYOUT, (RHYTHM,))):
        base = (rows - r - 0.5) * ROW_MM
        # calibration pulse: 1 mV (10 mm) for 200 ms (5 mm)
        cal = [(1.0, base), (2.0, base), (2.0, base + 10), (7.0, base + 10), (7.0, base), (8, base)]
        traces.append(np.array(cal, dtype=float))
        if len(row) == 1:  # the rhythm strip
            if row[0] in data:
                trace(LEFT_MM, base, data[row[0]][:n])
            labels.append((LEFT_MM + 1, base + 11, row[0]))
            continue
        for c, name in enumerate(row):
            a, b = round(c * col_s * fs), round((c + 1) * col_s * fs)
            x0 = LEFT_MM + c * col_s * MM_PER_S
            if name in data:
                trace(x0, base, data[name][a:b])
            labels.append((x0 + 1, base + 11, name))
            if c:  # the lead change mark
                traces.append(np.array([(x0, base - 3), (x0, base + 3)], dtype=float))
    ax.add_collection(LineCollection(traces, colors="black", linewidths=0.8, zorder=3))
    for x, y, text in labels:
        ax.text(x, y, text, fontsize=9, fontweight="bold", zorder=4)
    top = height_mm - 5.0
    if title:
        size = 12 if len(title) <= 90 else max(7, int(12 * 90 / len(title)))
        ax.text(2.0, top, title, fontsize=size, fontweight="bold", va="center", zorder=4)
    for i, line in enumerate(lines):
        ax.text(2.0, top - 5.0 * (i + 1), line, fontsize=9, va="center", zorder=4)
    ax.text(
        width_mm - 2.0,
        top - 10.0,
        f"{MM_PER_S:g} mm/s  {MM_PER_MV:g} mm/mV",
        fontsize=9,
        ha="right",
        va="center",
        zorder=4,
    )
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor=fig.get_facecolor())
    plt.close(fig)
    return buf.getvalue()


def strip_png(strip, *, dpi: int = 100, device_label: str | None = None) -> bytes:  # type: ignore[no-untyped-def]
    """PNG bytes of a :class:`bridge.strip.Strip`, labelled with what its alert said."""
    a = strip.alert or {}
    what = ", ".join(a.get("findings") or []) or a.get("reason") or a.get("condition", "")
    hr = a.get("heart_rate")
    title = f"{device_label or strip.device_id}: {what}"
    lines = [
        f"{str(a.get('priority', '')).upper()} {a.get('kind', '')} {a.get('event', '')}"
        f" - {a.get('reason', '')}",
        f"HR {f'{hr:.0f} bpm' if hr is not None else '--'}   from {strip.start_utc} UTC, "
        f"{strip.seconds:.1f} s at {strip.fs:g} Hz ({strip.filter})   alert {strip.alert_id}",
    ]
    if a.get("measured"):
        lines.insert(1, a["measured"])
    return render_strip(
        dict(zip(strip.leads, strip.samples)), strip.fs, title=title[:140], lines=lines, dpi=dpi
    )


def write_png(png: bytes, out: str | Path) -> Path:
    """Write PNG bytes to ``out`` (its folder created); return the path."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return path

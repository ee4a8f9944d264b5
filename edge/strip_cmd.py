"""``ecg-edge strip RECORD --out strip.png``: a record's 12 leads on ECG paper.

The signal is the monitor's (the record through the edge's resampler and
band-pass, at 500 Hz); the findings are the classifier's on the 30 s frame
that ends where the strip ends (as the monitor would have decided there), the
heart rate the beat detector's at that point. Matplotlib is imported only
here, when the command runs (the ``station`` extra); the agent never needs it.
"""

from __future__ import annotations

from pathlib import Path

import typer


def strip(
    record: Path = typer.Argument(..., help="The WFDB record (.hea/.mat/name)."),
    out: Path = typer.Option(Path("strip.png"), "--out", help="The PNG to write."),
    start: float = typer.Option(0.0, "--start", min=0, help="Seconds into the record."),
    seconds: float = typer.Option(10.0, "--seconds", min=0.5, max=10.0, help="Length, <= 10 s."),
    bundle: Path | None = typer.Option(None, "--bundle", help="Model bundle (default: shipped)."),
    dpi: int = typer.Option(100, "--dpi", min=50, max=600, help="Pixels per inch of the PNG."),
) -> None:
    """Draw a record's 12 leads on ECG paper (25 mm/s, 10 mm/mV) with findings and heart rate."""
    import numpy as np

    from bridge.strip_png import render_strip, write_png
    from edge.bundle import load_bundle
    from edge.classify import Classifier
    from edge.dsp import preprocess
    from edge.errors import invalid
    from edge.framer import Frame
    from edge.records import read_record
    from edge.sources import LEADS

    b = load_bundle(bundle)
    cfg = b.manifest.dsp
    rec = read_record(record)
    x = preprocess(rec.signal, rec.fs, cfg)
    fs = cfg.fs
    a = round(start * fs)
    if a >= x.shape[1]:
        raise invalid("start", f"less than the record's {x.shape[1] / fs:.1f} s", start)
    e = min(x.shape[1], a + round(seconds * fs))
    # the classifier's findings on the frame ending at the strip's end
    f0 = max(0, e - cfg.frame_samples)
    frame = Frame(np.ascontiguousarray(x[:, f0:e]), f0, e)
    c = Classifier(b, "int8").classify(frame.model_input(cfg))
    names = {k.code: k for k in b.manifest.classes}
    found = [f"{names[k].abbreviation}: {names[k].name}" for k in c.positive_codes() if k in names]
    hr = _heart_rate(x[:, :e], fs)
    labels = ", ".join(rec.header.dx or ()) or "none"
    title = f"{rec.name}: {', '.join(found) or 'no finding'}"
    lines = [
        f"classifier (bundle {b.sha256[:12]}) on the frame {f0 / fs:.1f}-{e / fs:.1f} s; "
        f"record labels (SNOMED CT) {labels}",
        f"HR {f'{hr:.0f} bpm' if hr is not None else '--'}   {a / fs:.2f}-{e / fs:.2f} s of "
        f"{rec.header.seconds:.1f} s, {fs:g} Hz "
        f"(band-pass {cfg.band_hz[0]:g}-{cfg.band_hz[1]:g} Hz)",
    ]
    png = render_strip(
        dict(zip(LEADS, x[:, a:e])), fs, title=title[:140], lines=lines, units_per_mv=1.0, dpi=dpi
    )
    path = write_png(png, out)
    print(f"wrote {path} ({len(png) // 1024} kB): {title}")


def _heart_rate(x, fs: float) -> float | None:  # type: ignore[no-untyped-def]
    """The beat detector's heart rate at the end of ``x`` (n_leads, n) mV; None without one."""
    try:
        from edge.beats import BeatDetector
    except ImportError:  # pragma: no cover
        return None
    det = BeatDetector(fs, n_leads=x.shape[0])
    det.push(x)
    det.flush()
    return det.heart_rate(x.shape[1]).bpm

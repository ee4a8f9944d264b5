"""Limb-lead reversal and inverted leads, from the median beat of each lead.

Per lead, the median of the beats (R peak - 250 ms to + 150 ms) of the
preprocessed 500 Hz signal. Two checks:

- **LA/RA reversal** (lead I inverted, II and III swapped, aVR and aVL
  swapped): lead I's QRS is anticorrelated with V5 and V6 (in a normal heart
  I and the left precordial leads look alike, and no arm electrode touches
  the precordial leads), with at least one of the swap's signs in the limb
  leads themselves (two when the anticorrelation is weaker): a negative P
  wave in I, a net negative QRS in I, aVR more positive than aVL.
- **A single inverted limb lead**: by Einthoven's and Goldberger's laws the
  six limb leads are projections of one frontal-plane vector; the one lead
  whose sign flip removes at least 40 % of what no such vector explains is
  inverted (an LA/RA swap keeps them consistent, so it never looks like one).
- **An inverted precordial lead**: V2-V6 whose QRS runs against its
  neighbours' (V6: V5, V4 and I); V1, which normally runs against V6 and is
  often unlike V2, when it looks like V6 and unlike V2.

Thresholds were chosen on the 2020 Challenge's 494 records (one 10 s check
each) and checked on PTB-XL records it was not chosen on
(``python -m benchmarks.beats``).

:func:`check_leads` needs at least 4 beats; it is run on 10 s of signal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
_PRE, _POST = 0.250, 0.150  # template window around the R peak, s
_QRS = (-0.060, 0.080)  # QRS part of it, s from the R peak
_P = (-0.240, -0.090)  # P wave part, s from the R peak


@dataclass(frozen=True)
class LeadCheck:
    """What :func:`check_leads` found: ``reversed`` (LA/RA), ``inverted`` leads, a reason."""

    reversed: bool
    inverted: tuple[str, ...]
    reason: str
    score: float = 0.0  # the reversal evidence (negative correlation of I with V5/V6)


def templates(x: np.ndarray, beats: list[int], fs: float = 500.0) -> np.ndarray | None:
    """(n_leads, n) median beat, or None with fewer than 4 whole beats in ``x``."""
    pre, post = round(_PRE * fs), round(_POST * fs)
    good = [b for b in beats if b - pre >= 0 and b + post <= x.shape[1]]
    if len(good) < 4:
        return None
    stack = np.stack([x[:, b - pre : b + post] for b in good])
    t = np.median(stack, axis=0)
    return t - np.median(t[:, : round(0.04 * fs)], axis=1, keepdims=True)  # PR baseline


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    d = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / d) if d > 1e-12 else 0.0


def _window(t: np.ndarray, span: tuple[float, float], fs: float) -> np.ndarray:
    pre = round(_PRE * fs)
    return t[..., pre + round(span[0] * fs) : pre + round(span[1] * fs)]


# Einthoven and Goldberger: the six limb leads are projections of one frontal-plane
# vector on axes at 0, 60, 120, -150, -30 and 90 degrees (the augmented leads at
# sqrt(3)/2 of its length). _LIMB_PROJ projects six leads onto that 2-D space.
_ANGLES = np.deg2rad([0.0, 60.0, 120.0, -150.0, -30.0, 90.0])
_GAIN = np.array([1.0, 1.0, 1.0, 0.5 * np.sqrt(3), 0.5 * np.sqrt(3), 0.5 * np.sqrt(3)])
_LIMB = np.stack([_GAIN * np.cos(_ANGLES), _GAIN * np.sin(_ANGLES)], axis=1)
_LIMB_PROJ = _LIMB @ np.linalg.pinv(_LIMB)
_LIMB_RATIO = 0.6  # a flip must remove 40 % of the limb leads' inconsistency
_LIMB_MIN = 0.1  # and that inconsistency be >= 10 % of their RMS amplitude
_PRECORDIAL = 0.3  # mean anticorrelation with the reference leads
# references of each precordial lead (indices in LEADS): its neighbours; V6 also lead I
_PRECORDIAL_REFS = {7: (6, 8), 8: (7, 9), 9: (8, 10), 10: (9, 11), 11: (10, 9, 0)}


def _limb_error(t: np.ndarray) -> float:
    """RMS of the six limb leads' part that no frontal-plane vector explains."""
    r = t[:6] - _LIMB_PROJ @ t[:6]
    return float(np.sqrt((r * r).mean()))


def _inverted_limb(t: np.ndarray) -> int | None:
    """The limb lead whose sign flip makes the six consistent again, or None."""
    base = _limb_error(t)
    amp = float(np.sqrt((t[:6] ** 2).mean()))
    if base <= _LIMB_MIN * amp:
        return None
    errors = []
    for k in range(6):
        f = t.copy()
        f[k] = -f[k]
        errors.append(_limb_error(f))
    k = int(np.argmin(errors))
    return k if errors[k] < _LIMB_RATIO * base else None


def _inverted_precordial(q: np.ndarray, arms_swapped: bool = False) -> list[int]:
    """Precordial leads whose QRS runs against their references' (with lead I turned
    back first where the arm electrodes look swapped)."""
    if arms_swapped:
        q = q.copy()
        q[0] = -q[0]
    out = [
        k
        for k, refs in _PRECORDIAL_REFS.items()
        if -np.mean([_corr(q[k], q[r]) for r in refs]) > _PRECORDIAL
    ]
    # V1 normally runs against V6 (rS against qR) and is often unlike V2 (QS, rSr'):
    # inverted when it looks like V6 and unlike V2
    if _corr(q[6], q[11]) > 0.0 and _corr(q[6], q[7]) < 0.0:
        out.insert(0, 6)
    return out


def _reversal_signs(t: np.ndarray, q: np.ndarray, fs: float) -> int:
    """How many of the three signs of an LA/RA swap the limb leads show: a negative
    P wave in I, a net negative QRS in I, aVR more positive than aVL."""
    p_i = float(_window(t[0], _P, fs).sum())
    area = q.sum(axis=1)
    return int(p_i < 0) + int(area[0] < 0) + int(area[3] > area[4])


def check_leads(x: np.ndarray, beats: list[int], fs: float = 500.0) -> LeadCheck | None:
    """Check 12 leads (LEADS order, preprocessed mV) for LA/RA reversal and inverted leads."""
    t = templates(x, beats, fs)
    if t is None:
        return None
    q = _window(t, _QRS, fs)
    if np.ptp(q, axis=1).min() < 0.02:  # a flat lead: nothing to say about signs
        return LeadCheck(False, (), "", 0.0)
    # LA/RA: lead I runs against V5 and V6 (which no arm electrode touches), with signs
    # of the swap in the limb leads themselves
    score = -min(_corr(q[0], q[10]), _corr(q[0], q[11]))
    signs = _reversal_signs(t, q, fs)
    swapped = (score > 0.5 and signs >= 2) or (score > 0.6 and signs >= 1)
    inverted = [k for k in [_inverted_limb(t)] if k is not None]
    precordial = _inverted_precordial(q)
    if swapped and not inverted and precordial == [11] and signs < 2:
        swapped = False  # V6 alone against lead I: V6 inverted, not the arms swapped
    elif swapped and not inverted:
        precordial = _inverted_precordial(q, arms_swapped=True)
    inverted += precordial
    reversed_ = swapped and not inverted
    names = [LEADS[k] for k in inverted]
    if reversed_:
        reason = "lead I inverted, II and III swapped, aVR and aVL swapped: LA/RA reversed"
    elif names:
        reason = f"lead{'s' if len(names) > 1 else ''} {', '.join(names)} inverted"
    else:
        reason = ""
    return LeadCheck(reversed_, tuple(names), reason, score)


def reverse_la_ra(x: np.ndarray) -> np.ndarray:
    """The 12 leads as an LA/RA electrode swap records them (or undoes it: an involution)."""
    y = x.copy()
    y[0] = -x[0]
    y[1], y[2] = x[2], x[1]
    y[3], y[4] = x[4], x[3]
    return y


def restore_leads(x: np.ndarray, arms_reversed: bool, inverted: tuple[str, ...] = ()) -> np.ndarray:
    """The 12 leads (LEADS order) as they would read wired correctly: an LA/RA swap
    undone and each named inverted lead turned back. ``x`` itself is not changed."""
    y = reverse_la_ra(x) if arms_reversed else x.copy()
    for name in inverted:
        k = LEADS.index(name)
        y[k] = -y[k]
    return y


def check_record(signal: np.ndarray, fs: float) -> tuple[np.ndarray, list[int], LeadCheck | None]:
    """A record's raw 12 leads (LEADS order, at ``fs``) checked on their first 10 s as
    the agent checks them: (those 10 s band-passed at 500 Hz, their beats, the check)."""
    from edge.beats import BeatDetector
    from edge.dsp import preprocess

    x = preprocess(signal[:, : round(10 * fs)], fs)
    det = BeatDetector()
    beats = [b.sample for b in det.push(x) + det.flush()]
    return x, beats, check_leads(x, beats)


def restore_record(signal: np.ndarray, fs: float) -> tuple[np.ndarray, LeadCheck | None]:
    """A whole record's raw 12 leads checked (:func:`check_record`) and, where the check
    found a reversal or inverted leads, restored (the filters are linear and odd, so
    undoing the raw leads undoes the filtered ones): what ``ecg-train evaluate --leads
    restored`` does offline, with the agent's functions."""
    _, _, c = check_record(signal, fs)
    if c is None or not (c.reversed or c.inverted):
        return signal, c
    return restore_leads(signal, c.reversed, c.inverted), c

"""Limb-lead reversal and inverted leads, from the median beat of each lead.

Per lead, the median of the beats (R peak - 250 ms to + 150 ms) of the
preprocessed 500 Hz signal. Two checks:

- **LA/RA reversal** (lead I inverted, II and III swapped, aVR and aVL
  swapped): lead I's QRS is anticorrelated with V5 and V6 (in a normal heart
  I and the left precordial leads look alike, and the precordial leads do not
  depend on the arm electrodes) and lead I's P wave is negative.
- **A single inverted lead**: Einthoven's law ties the limb leads (II = I + III,
  aVR = -(I + II)/2, aVL = (I - III)/2, aVF = (II + III)/2); one limb lead whose
  sign flip makes the laws hold much better than as recorded is inverted. A
  precordial lead anticorrelated with both neighbours that correlate with each
  other is inverted.

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


def _einthoven_error(t: np.ndarray) -> float:
    i, ii, iii, avr, avl, avf = t[:6]
    scale = float(np.sqrt((t[:6] ** 2).mean())) + 1e-9
    res = [ii - (i + iii), avr + (i + ii) / 2, avl - (i - iii) / 2, avf - (ii + iii) / 2]
    return float(np.sqrt(np.mean([(r**2).mean() for r in res]))) / scale


def check_leads(x: np.ndarray, beats: list[int], fs: float = 500.0) -> LeadCheck | None:
    """Check 12 leads (LEADS order, preprocessed mV) for LA/RA reversal and inverted leads."""
    t = templates(x, beats, fs)
    if t is None:
        return None
    q = _window(t, _QRS, fs)
    if np.ptp(q, axis=1).min() < 0.02:  # a flat lead: nothing to say about signs
        return LeadCheck(False, (), "", 0.0)
    inverted: list[str] = []
    # single inverted limb lead: the sign flip that makes Einthoven's laws hold
    base = _einthoven_error(t)
    if base > 0.2:
        best, which = base, None
        for k in range(6):
            f = t.copy()
            f[k] = -f[k]
            e = _einthoven_error(f)
            if e < best:
                best, which = e, k
        if which is not None and best < 0.25 * base:
            inverted.append(LEADS[which])
    # single inverted precordial lead: against both neighbours that agree
    for k in range(7, 11):
        left, right = _corr(q[k], q[k - 1]), _corr(q[k], q[k + 1])
        if left < -0.5 and right < -0.5 and _corr(q[k - 1], q[k + 1]) > 0.5:
            inverted.append(LEADS[k])
    score = -min(_corr(q[0], q[10]), _corr(q[0], q[11]))
    p_i = float(_window(t[0], _P, fs).sum()) / fs
    reversed_ = not inverted and score > 0.5 and (p_i < 0 or score > 0.85)
    if reversed_:
        reason = "lead I inverted, II and III swapped, aVR and aVL swapped: LA/RA reversed"
    elif inverted:
        reason = f"lead{'s' if len(inverted) > 1 else ''} {', '.join(inverted)} inverted"
    else:
        reason = ""
    return LeadCheck(reversed_, tuple(inverted), reason, score)


def reverse_la_ra(x: np.ndarray) -> np.ndarray:
    """The 12 leads as an LA/RA electrode swap records them (or undoes it: an involution)."""
    y = x.copy()
    y[0] = -x[0]
    y[1], y[2] = x[2], x[1]
    y[3], y[4] = x[4], x[3]
    return y

"""The scored classes of the PhysioNet/CinC Challenge 2020 and the reward matrix.

Read from the Challenge's own tables shipped in ``trainer/scoring/``
(BSD-2-Clause, see ``scoring/LICENSE``): 27 scored SNOMED CT codes, of which
three pairs are equivalent and scored as one, giving 24 outputs. Sinus rhythm
(426783006) is the normal ("inactive") class.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from edge.errors import ScoringError

NORMAL_CODE = "426783006"
# (kept code, merged code): the Challenge scores each pair as one class.
EQUIVALENT_CODES: tuple[tuple[str, str], ...] = (
    ("713427006", "59118001"),  # complete RBBB = RBBB
    ("284470004", "63593006"),  # PAC = SVPB
    ("427172004", "17338001"),  # PVC = VPB
)
_MERGE = {merged: kept for kept, merged in EQUIVALENT_CODES}


@dataclass(frozen=True)
class ScoredClass:
    """One output of the classifier: a SNOMED CT code and what it means."""

    code: str
    abbreviation: str
    name: str
    equivalent: tuple[str, ...] = ()

    @property
    def codes(self) -> tuple[str, ...]:
        return (self.code, *self.equivalent)


def _scoring_dir() -> Path:
    return Path(__file__).parent / "scoring"


def canonical_code(code: str) -> str:
    """Map a code to the one its equivalence class is scored as."""
    code = str(code).strip()
    return _MERGE.get(code, code)


@lru_cache(maxsize=1)
def scored_classes() -> tuple[ScoredClass, ...]:
    """The 24 scored classes, in the column order of ``weights.csv``."""
    names: dict[str, tuple[str, str]] = {}
    with open(_scoring_dir() / "dx_mapping_scored.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            names[row["SNOMED CT Code"].strip()] = (row["Abbreviation"].strip(), row["Dx"].strip())
    out: list[ScoredClass] = []
    for code in _weights_table()[0]:
        if code in _MERGE:
            continue
        eq = tuple(m for k, m in EQUIVALENT_CODES if k == code)
        abbr = "/".join([names[code][0], *(names[m][0] for m in eq)])
        out.append(ScoredClass(code=code, abbreviation=abbr, name=names[code][1], equivalent=eq))
    return tuple(out)


@lru_cache(maxsize=1)
def unscored_codes() -> frozenset[str]:
    """SNOMED CT codes the Challenge knows but does not score."""
    with open(_scoring_dir() / "dx_mapping_unscored.csv", newline="") as fh:
        return frozenset(row["SNOMED CT Code"].strip() for row in csv.DictReader(fh))


@lru_cache(maxsize=1)
def _weights_table() -> tuple[tuple[str, ...], np.ndarray]:
    path = _scoring_dir() / "weights.csv"
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    cols = tuple(c.strip() for c in rows[0][1:])
    w = np.array([[float(v) for v in r[1:]] for r in rows[1:]], dtype=np.float64)
    if w.shape != (len(cols), len(cols)):
        raise ScoringError(f"{path}: expected a square reward matrix, got {w.shape}")
    return cols, w


def reward_matrix(classes: Iterable[str] | None = None) -> np.ndarray:
    """The Challenge reward matrix (n_classes, n_classes) for ``classes`` (default: all 24)."""
    codes = [c.code for c in scored_classes()] if classes is None else [str(c) for c in classes]
    cols, w = _weights_table()
    index = {c: i for i, c in enumerate(cols)}
    missing = [c for c in codes if c not in index]
    if missing:
        raise ScoringError(f"Codes not in the reward matrix: {', '.join(missing)}")
    idx = [index[c] for c in codes]
    return w[np.ix_(idx, idx)].copy()


def class_codes() -> list[str]:
    """Codes of the 24 scored outputs, in order."""
    return [c.code for c in scored_classes()]


def label_vector(codes: Iterable[str], classes: Iterable[str] | None = None) -> np.ndarray:
    """Boolean vector (n_classes,) of the scored classes present in ``codes``.

    Equivalent codes are merged; unscored codes are ignored (kept on the record).
    """
    order = class_codes() if classes is None else list(classes)
    present = {canonical_code(c) for c in codes}
    return np.array([c in present for c in order], dtype=bool)

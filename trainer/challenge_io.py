"""Challenge 2020 files for scoring: labels from WFDB headers, the output CSV format.

An output file ``<record>.csv`` holds, one per line::

    #<record>
    <code>,<code>,...        the classes (SNOMED CT codes)
    0,1,...                  the decisions
    0.12,0.87,...            the scores

Reading is as tolerant as the official scorer where that is harmless
(whitespace, blank lines, equivalent codes such as 59118001 counted as the
merged class, classes not written count as 0, unscored classes ignored) and
strict where the file is broken: a missing line, a line with another number of
columns than the class line, a value that is not a number gives a
:class:`~edge.errors.ScoringError` naming the file and the line. (The official
scorer counts a broken file as all-negative without stopping; we refuse it.)

Labels come from the ``#Dx:`` comment of each header. Codes that are neither
scored nor listed as unscored by the Challenge are kept, with a
:class:`ScoringWarning`; they are not an error.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import ScoringError
from edge.records import parse_dx
from trainer.labels import canonical_code, class_codes, label_vector, unscored_codes

_TRUE = frozenset({"1", "True", "true", "T", "t"})  # the official reader's "positive" tokens
_FALSE = frozenset({"0", "False", "false", "F", "f"})


class ScoringWarning(UserWarning):
    """Something in the labels or outputs was skipped or assumed, but scoring goes on."""


# --------------------------------------------------------------------------- labels


def parse_dx_codes(header_lines: Iterable[str], source: str = "header") -> tuple[str, ...]:
    """The SNOMED CT codes of the ``#Dx:`` (or ``# Dx:``) comment lines of a WFDB header.

    Codes are comma separated; spaces are ignored; duplicates are dropped (first
    kept); several Dx lines are joined. No Dx line, or only empty ones, is an
    error naming ``source``.

    >>> parse_dx_codes(["A0001 12 500 7500", "#Age: 74", "# Dx: 59118001, 164889003"])
    ('59118001', '164889003')
    """
    codes = parse_dx([line.strip() for line in header_lines])
    if codes is None:
        raise ScoringError(f"{source}: no '#Dx:' line with the diagnoses")
    if not codes:
        raise ScoringError(f"{source}: the '#Dx:' line lists no code")
    return codes


def read_label_dir(directory: str | Path) -> dict[str, frozenset[str]]:
    """Record name -> its Dx codes, for every ``*.hea`` under ``directory`` (recursively).

    Codes are as written (not merged). Raises ScoringError for a missing
    folder, a folder without headers, a header without Dx, and two headers of
    the same record name. Unknown codes warn (ScoringWarning) once per call.
    """
    root = Path(directory)
    if not root.is_dir():
        raise ScoringError(f"Label folder not found: {root}")
    headers = sorted(p for p in root.rglob("*.hea") if p.is_file() and not p.name.startswith("."))
    if not headers:
        raise ScoringError(f"No header files (*.hea) in {root}")
    known = set(class_codes()) | set(unscored_codes())
    out: dict[str, frozenset[str]] = {}
    where: dict[str, Path] = {}
    unknown: dict[str, int] = {}
    for path in headers:
        name = path.stem
        if name in out:
            raise ScoringError(f"Two headers for record {name}: {where[name]} and {path}")
        codes = parse_dx_codes(_read_lines(path), source=str(path))
        for c in codes:
            if canonical_code(c) not in known:
                unknown[c] = unknown.get(c, 0) + 1
        out[name] = frozenset(codes)
        where[name] = path
    if unknown:
        listed = ", ".join(f"{c} ({n})" for c, n in sorted(unknown.items()))
        warnings.warn(
            f"Codes neither scored nor unscored by the Challenge, kept but not scored: {listed}",
            ScoringWarning,
            stacklevel=2,
        )
    return out


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="strict").splitlines()
    except UnicodeDecodeError as exc:
        raise ScoringError(f"{path}: not a text file ({exc.reason})") from None
    except OSError as exc:
        raise ScoringError(f"{path}: cannot be read ({exc.strerror})") from None


# --------------------------------------------------------------------------- outputs


def write_output(
    path: str | Path,
    record: str,
    classes: Sequence[str],
    decisions: Sequence[bool] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
) -> Path:
    """Write one record's outputs in the Challenge format; returns the file written.

    ``path`` is the file, or an existing folder to write ``<record>.csv`` in.
    Scores are written in full precision (they read back exactly).
    """
    codes = [str(c).strip() for c in classes]
    dec = np.asarray(decisions)
    sc = np.asarray(scores, dtype=np.float64)
    if not codes or any(not c or "," in c for c in codes):
        raise ScoringError(f"Record {record}: expected non-empty class codes, got {codes!r}")
    if dec.shape != (len(codes),) or sc.shape != (len(codes),):
        raise ScoringError(
            f"Record {record}: {len(codes)} classes but {dec.size} decisions and {sc.size} scores"
        )
    if not np.isin(dec, (0, 1)).all():
        raise ScoringError(f"Record {record}: decisions must be 0/1 or bool")
    target = Path(path)
    if target.is_dir():
        target = target / f"{record}.csv"
    lines = [
        f"#{record}",
        ",".join(codes),
        ",".join("1" if d else "0" for d in dec),
        ",".join(repr(float(s)) for s in sc),
    ]
    try:
        target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ScoringError(f"{target}: cannot be written ({exc.strerror})") from None
    return target


def read_output(path: str | Path) -> tuple[str, tuple[str, ...], np.ndarray, np.ndarray]:
    """Read one output file: ``(record, classes, decisions, scores)``.

    ``classes`` as written (not merged), ``decisions`` (n,) bool, ``scores``
    (n,) float64 (NaN kept; scoring reads it as 0 like the official code).
    Without a ``#<record>`` line the record is the file name.
    """
    path = Path(path)
    record = path.stem
    rows: list[tuple[int, list[str]]] = []
    for number, raw in enumerate(_read_lines(path), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if not rows and record == path.stem and line[1:].strip():
                record = line[1:].strip()
            continue
        rows.append((number, [f.strip() for f in line.split(",")]))
    what = ("the class codes", "the decisions", "the scores")
    if len(rows) < 3:
        raise ScoringError(f"{path}: missing the line of {what[len(rows)]} (line {len(rows) + 2})")
    if len(rows) > 3:
        raise ScoringError(f"{path}, line {rows[3][0]}: unexpected fourth line of values")
    (n_cls, codes), (n_dec, dec_f), (n_sc, sc_f) = rows
    for i, code in enumerate(codes):
        if not code:
            raise ScoringError(f"{path}, line {n_cls}: empty class code in column {i + 1}")
    for number, fields, name in ((n_dec, dec_f, "decisions"), (n_sc, sc_f, "scores")):
        if len(fields) != len(codes):
            raise ScoringError(
                f"{path}, line {number}: {len(fields)} {name} for {len(codes)} classes"
            )
    decisions = np.array([_decision(v, path, n_dec, i) for i, v in enumerate(dec_f)], dtype=bool)
    scores = np.array([_score(v, path, n_sc, i) for i, v in enumerate(sc_f)], dtype=np.float64)
    return record, tuple(codes), decisions, scores


def _decision(value: str, path: Path, line: int, col: int) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if number in (0.0, 1.0):
        return bool(number)
    raise ScoringError(f"{path}, line {line}, column {col + 1}: expected 0 or 1, got {value!r}")


def _score(value: str, path: Path, line: int, col: int) -> float:
    try:
        return float(value)
    except ValueError:
        raise ScoringError(
            f"{path}, line {line}, column {col + 1}: expected a number, got {value!r}"
        ) from None


def output_vectors(
    classes: Sequence[str],
    decisions: Sequence[bool] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    order: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One record's outputs as (n_order,) bool decisions and float scores in ``order``.

    As the official loader: equivalent codes are merged (decision: any; score:
    mean, ignoring NaN), classes not in ``order`` are ignored, classes not
    written are 0, and a NaN score is 0. ``order`` defaults to the 24 scored classes.
    """
    order = class_codes() if order is None else [str(c) for c in order]
    merged = [canonical_code(c) for c in classes]
    dec = np.asarray(decisions, dtype=bool)
    sc = np.asarray(scores, dtype=np.float64)
    out_dec = np.zeros(len(order), dtype=bool)
    out_sc = np.zeros(len(order), dtype=np.float64)
    for j, code in enumerate(order):
        idx = [k for k, c in enumerate(merged) if c == code]
        if idx:
            out_dec[j] = bool(dec[idx].any())
            finite = sc[idx][~np.isnan(sc[idx])]
            out_sc[j] = float(finite.mean()) if finite.size else 0.0
    return out_dec, out_sc


# --------------------------------------------------------------------------- pairing


@dataclass(frozen=True)
class ScoringSet:
    """Labels and outputs paired by record, ready for :func:`trainer.metrics.score_all`.

    Arrays are (n_records, n_classes) in the order of ``records`` and ``classes``.
    """

    records: tuple[str, ...]
    classes: tuple[str, ...]
    labels: np.ndarray
    outputs: np.ndarray
    scores: np.ndarray
    missing: tuple[str, ...]  # labelled records without an output file (scored as all 0)
    unmatched: tuple[str, ...]  # output files of records without labels (ignored)


def label_matrix(
    label_sets: Mapping[str, Iterable[str]], records: Sequence[str], order: Sequence[str]
) -> np.ndarray:
    """(n_records, n_classes) bool labels, equivalent codes merged, unscored codes dropped."""
    return np.array([label_vector(label_sets[r], order) for r in records], dtype=bool).reshape(
        len(records), len(order)
    )


def load_scoring_set(labels_dir: str | Path, outputs_dir: str | Path) -> ScoringSet:
    """Pair the headers under ``labels_dir`` with the ``<record>.csv`` under ``outputs_dir``.

    A labelled record without an output file is scored as all-zero outputs; an
    output without a labelled record is ignored. Both are reported in the
    result; a record name written inside a file that differs from its file name
    warns. No output file at all, or none matching a record, is an error.
    """
    label_sets = read_label_dir(labels_dir)
    out_root = Path(outputs_dir)
    if not out_root.is_dir():
        raise ScoringError(f"Output folder not found: {out_root}")
    files: dict[str, Path] = {}
    for path in sorted(out_root.rglob("*.csv")):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.stem in files:
            raise ScoringError(
                f"Two output files for record {path.stem}: {files[path.stem]} and {path}"
            )
        files[path.stem] = path
    if not files:
        raise ScoringError(f"No output files (*.csv) in {out_root}")
    records = tuple(sorted(label_sets))
    if not set(records) & set(files):
        raise ScoringError(
            f"None of the {len(files)} output files in {out_root} matches one of the "
            f"{len(records)} labelled records in {labels_dir}"
        )
    order = tuple(class_codes())
    outputs = np.zeros((len(records), len(order)), dtype=bool)
    scores = np.zeros((len(records), len(order)), dtype=np.float64)
    missing = []
    for i, rec in enumerate(records):
        path = files.get(rec)
        if path is None:
            missing.append(rec)
            continue
        written, codes, dec, sc = read_output(path)
        if written != rec:
            warnings.warn(
                f"{path}: written for record {written!r}, scored as {rec!r}",
                ScoringWarning,
                stacklevel=2,
            )
        outputs[i], scores[i] = output_vectors(codes, dec, sc, order)
    return ScoringSet(
        records=records,
        classes=order,
        labels=label_matrix(label_sets, records, order),
        outputs=outputs,
        scores=scores,
        missing=tuple(missing),
        unmatched=tuple(sorted(set(files) - set(records))),
    )

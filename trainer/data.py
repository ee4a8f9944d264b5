"""Records for training: scan, labels, a cache of preprocessed signals, splits.

``scan`` reads headers only and builds the index (one :class:`Item` per usable
record; the rest are counted with their reason, never fatal). ``load_cache``
runs every record once through ``edge.dsp`` (the same code the edge runs) and
keeps the 500 Hz band-passed signal as float16 in one ``.npy`` file per record
under a folder keyed by the preprocessing parameters; a second epoch, or a
second run, reads no WFDB file. Records whose signal turns out unusable
(truncated, NaN, missing file) are dropped there, counted and reported.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.dsp import DspConfig, preprocess, to_model_rate
from edge.errors import EcgEdgeError, RecordError
from edge.records import find_records, read_header, read_record
from trainer.labels import class_codes, label_vector, scored_classes, unscored_codes

# Databases from one source are held out together in leave-one-source-out
# validation: CPSC-Extra is CPSC's hospital, PTB-XL is PTB's institute.
SOURCE_OF_DATABASE = {
    "cpsc2018": "cpsc",
    "cpsc2018-extra": "cpsc",
    "ptb": "ptb",
    "ptb-xl": "ptb",
}


@dataclass(frozen=True)
class Item:
    """One usable record in the index."""

    name: str
    header: Path
    database: str
    fs: float
    n_samples: int
    dx: tuple[str, ...]
    labels: np.ndarray = field(compare=False)  # (n_classes,) bool
    patient: str = ""  # records of one patient stay on one side of every split
    strat_fold: int | None = None  # PTB-XL's own stratified fold (#StratFold), if given

    @property
    def source(self) -> str:
        return SOURCE_OF_DATABASE.get(self.database, self.database)


def _ptbxl_id(name: str) -> str | None:
    """PTB-XL's ecg_id of ``LR00123`` / ``HR00123`` (the 100 Hz and 500 Hz twins)."""
    if len(name) > 2 and name[:2] in ("LR", "HR") and name[2:].isdigit():
        return str(int(name[2:]))
    return None


def _patients(headers: list) -> dict[str, str]:
    """Record name -> patient key: ``#PatientID`` where given (PTB-XL), else the record.

    An ``HR`` record (the Challenge's 500 Hz copy of PTB-XL) takes the patient
    of its ``LR`` twin (the same ECG) when that twin is in the data.
    """
    by_ecg = {}
    out = {}
    for h in headers:
        pid = _comment(h.comments, "PatientID")
        out[h.name] = f"ptbxl:{pid}" if pid else f"record:{h.name}"
        ecg = _ptbxl_id(h.name)
        if pid and ecg is not None:
            by_ecg[ecg] = out[h.name]
    for h in headers:
        ecg = _ptbxl_id(h.name)
        if out[h.name].startswith("record:") and ecg in by_ecg:
            out[h.name] = by_ecg[ecg]
    return out


def _comment(comments, key: str) -> str | None:
    for line in comments:
        line = line.lstrip("#").strip()
        if line.lower().startswith(key.lower() + ":"):
            value = line.split(":", 1)[1].strip()
            return value or None
    return None


@dataclass
class ScanReport:
    """What a scan found: usable records, skipped ones with reasons, unknown codes."""

    items: list[Item]
    skipped: list[tuple[str, str]]
    unknown_codes: Counter

    def summary(self) -> dict:
        labels = np.array([i.labels for i in self.items]) if self.items else np.zeros((0, 24))
        return {
            "n_records": len(self.items),
            "n_skipped": len(self.skipped),
            "databases": dict(Counter(i.database for i in self.items)),
            "positives": {
                c.abbreviation: int(n) for c, n in zip(scored_classes(), labels.sum(0)) if n
            },
            "unscored_only": int((labels.sum(1) == 0).sum()),
        }

    def describe(self) -> str:
        s = self.summary()
        lines = [f"{s['n_records']} usable records, {s['n_skipped']} skipped"]
        lines += [f"  skipped {n}: {why}" for n, why in self.skipped[:10]]
        if len(self.skipped) > 10:
            lines.append(f"  ... and {len(self.skipped) - 10} more")
        if self.unknown_codes:
            top = ", ".join(f"{c} x{n}" for c, n in self.unknown_codes.most_common(5))
            lines.append(f"  codes neither scored nor known-unscored (kept, unscored): {top}")
        return "\n".join(lines)


def scan(paths: Iterable[str | Path]) -> ScanReport:
    """Index every record under ``paths`` from its header; skip and count bad ones."""
    headers = find_records(list(paths))
    if not headers:
        raise EcgEdgeError(f"no records (.hea files) under {', '.join(map(str, paths))}")
    known = set(class_codes()) | unscored_codes() | {"59118001", "63593006", "17338001"}
    items, skipped, unknown = [], [], Counter()
    good = []
    for hea in progress(headers, "scanning headers"):
        try:
            h = read_header(hea)
            if h.dx is None:
                raise RecordError(h.name, "header has no Dx line")
            h.lead_order()
        except RecordError as exc:
            skipped.append((exc.record, exc.reason))
            continue
        good.append(h)
    patients = _patients(good)
    for h in good:
        # An empty Dx line (PTB-XL statements the Challenge does not score): negative
        # for every class, a record like any other.
        unknown.update(c for c in h.dx if c not in known)
        fold = _comment(h.comments, "StratFold")
        items.append(
            Item(
                h.name,
                h.path,
                h.database,
                h.fs,
                h.n_samples,
                h.dx,
                label_vector(h.dx),
                patients[h.name],
                int(fold) if fold and fold.isdigit() else None,
            )
        )
    names = Counter(i.name for i in items)
    dup = [n for n, k in names.items() if k > 1]
    if dup:
        raise EcgEdgeError(f"record names appear twice: {', '.join(dup[:5])}")
    return ScanReport(items, skipped, unknown)


def _record_digest(header: Path) -> str:
    """Names a record's cache file: its path, and the size and mtime of its files.

    A record rewritten in place (new signal, new header) gets a new cache file.
    """
    parts = [str(header.resolve())]
    for f in (header, header.with_suffix(".dat"), header.with_suffix(".mat")):
        try:
            st = f.stat()
        except OSError:
            continue
        parts.append(f"{f.suffix}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:10]


def _model_rate_path(path: str | Path) -> str:
    """The model-rate twin of a cache file: ``name.npy`` -> ``name.model.npy``."""
    return str(path)[: -len(".npy")] + ".model.npy"


def cache_key(config: DspConfig) -> str:
    """Folder name for a preprocessing configuration (changing it invalidates the cache)."""
    # normalisation happens per window after the cache: it does not change what is cached
    dsp = {k: v for k, v in config.to_json().items() if not k.startswith("norm")}
    blob = json.dumps({"dsp": dsp, "v": 2}, sort_keys=True).encode()
    return "dsp-" + hashlib.sha256(blob).hexdigest()[:12]


def _cache_one(args: tuple[str, str, dict]) -> tuple[str, str | None]:
    header, out, dsp = args
    try:
        rec = read_record(header)
        config = DspConfig.from_json(dsp)
        x = preprocess(rec.signal, rec.fs, config)
        for path, y in ((_model_rate_path(out), to_model_rate(x, config)), (out, x)):
            tmp = f"{path}.{os.getpid()}.tmp.npy"  # unique: several trainers may share a cache
            np.save(tmp, y.astype(np.float16))
            os.replace(tmp, path)
        return header, None
    except RecordError as exc:
        return header, exc.reason


@contextmanager
def _blas_threads(n: int):
    """Environment for child processes: ``n`` threads in OpenBLAS/MKL/OpenMP."""
    names = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update({k: str(n) for k in names})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def default_cache_dir() -> Path:
    return Path(os.environ.get("ECG_EDGE_CACHE", Path.home() / ".cache" / "ecg-edge"))


def load_cache(
    report: ScanReport,
    cache_dir: Path | None = None,
    config: DspConfig | None = None,
    workers: int = 2,
    progress: Callable[[Iterable, int], Iterable] | None = None,
    model_rate: bool = False,
) -> tuple[list[Item], list[np.ndarray]]:
    """Preprocessed 500 Hz signals, (n_leads, n) float16, of every usable item.

    Builds the missing cache files first (in ``workers`` processes); drops and
    reports items whose signal cannot be read. With ``model_rate`` the same
    signals at the model rate (``edge.dsp.to_model_rate`` of the whole record),
    what training crops are cut from.
    """
    config = config or DspConfig()
    root = (cache_dir or default_cache_dir()) / cache_key(config)
    todo = []
    paths = {}
    for it in report.items:
        digest = _record_digest(it.header)
        p = root / it.database / f"{it.name}-{digest}.npy"
        paths[it.name] = Path(_model_rate_path(p)) if model_rate else p
        if not p.is_file() or not Path(_model_rate_path(p)).is_file():
            p.parent.mkdir(parents=True, exist_ok=True)
            todo.append((str(it.header), str(p), config.to_json()))
    failed: dict[str, str] = {}
    if todo:
        wrap = progress or (lambda it, n: it)
        if workers > 1 and len(todo) > 8:
            # Fresh interpreters with one BLAS thread each: forked workers inherit the
            # parent's multi-threaded BLAS, and two of them on two cores fought over the
            # small matrix products of the band-pass (10 s instead of 1.9 s here).
            with (
                _blas_threads(1),
                ProcessPoolExecutor(
                    workers, mp_context=multiprocessing.get_context("spawn")
                ) as pool,
            ):
                results = wrap(pool.map(_cache_one, todo, chunksize=8), len(todo))
                failed = {Path(h).stem: why for h, why in results if why}
        else:
            failed = {Path(h).stem: why for h, why in wrap(map(_cache_one, todo), len(todo)) if why}
    items, signals = [], []
    for it in report.items:
        if it.name in failed:
            report.skipped.append((it.name, failed[it.name]))
            continue
        items.append(it)
        signals.append(paths[it.name])
    report.items = items
    if model_rate:  # small (10x less than 500 Hz): in memory, for random crops every epoch
        return items, [np.load(p) for p in signals]
    return items, CachedSignals(signals)


class CachedSignals(Sequence):
    """The cache's signals, each memory-mapped when asked for (never all files open at once).

    Mapping all 20k+ files up front would hold a file descriptor per file
    (``mmap`` duplicates it) and hit the process limit.
    """

    def __init__(self, paths: list[Path]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return CachedSignals(self.paths[i])
        return np.load(self.paths[i], mmap_mode="r")


def take(signals: Sequence, idx) -> Sequence:
    """``signals[i] for i in idx``, staying lazy for :class:`CachedSignals`."""
    if isinstance(signals, CachedSignals):
        return CachedSignals([signals.paths[i] for i in idx])
    return [signals[i] for i in idx]


def progress(items: list, desc: str):
    """``items`` with a progress bar on stderr when it is a terminal."""
    from tqdm import tqdm

    return tqdm(items, desc=desc, file=sys.stderr, leave=False, disable=not sys.stderr.isatty())


def tqdm_progress(desc: str) -> Callable[[Iterable, int], Iterable]:
    """A progress wrapper for :func:`load_cache` (tqdm on stderr)."""
    from tqdm import tqdm

    return lambda it, n: tqdm(it, total=n, desc=desc, file=sys.stderr, leave=False)


def kfold(labels: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Fold (0..k-1) of each record, stratified on its labels (iterative stratification).

    Sechidis et al. 2011: rarest label first, each of its records goes to the
    fold that most lacks it. Deterministic for a given seed.
    """
    n = labels.shape[0]
    if not 2 <= k <= n:
        raise EcgEdgeError(f"Invalid value for 'k': expected 2 <= k <= {n}, got {k}")
    rng = np.random.default_rng(seed)
    labels = labels.astype(bool)
    fold = np.full(n, -1)
    want_total = np.full(k, n / k)
    want_label = np.outer(np.full(k, 1 / k), labels.sum(0)).astype(float)  # (k, c)
    order = rng.permutation(n)
    remaining = labels[order].copy()
    idx_left = list(order)
    while idx_left:
        counts = remaining.sum(0)
        live = np.where(counts > 0)[0]
        if live.size == 0:  # records without any label: fill folds by size
            for i in idx_left:
                f = int(np.argmax(want_total + rng.random(k) * 1e-6))
                fold[i] = f
                want_total[f] -= 1
            break
        lab = live[np.argmin(counts[live])]
        take = [j for j, i in enumerate(idx_left) if labels[i, lab]]
        for j in take:
            i = idx_left[j]
            score = want_label[:, lab] + 1e-3 * want_total + rng.random(k) * 1e-6
            f = int(np.argmax(score))
            fold[i] = f
            want_label[f] -= labels[i]
            want_total[f] -= 1
        keep = [j for j in range(len(idx_left)) if j not in set(take)]
        idx_left = [idx_left[j] for j in keep]
        remaining = labels[idx_left] if idx_left else remaining[:0]
    return fold


def group_kfold(items: list[Item], labels: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Like :func:`kfold`, but every record of a patient lands in the same fold.

    Patients are stratified on the union of their records' labels, then each
    record takes its patient's fold.
    """
    keys = sorted({it.patient or it.name for it in items})
    index = {p: i for i, p in enumerate(keys)}
    of = np.array([index[it.patient or it.name] for it in items])
    plabels = np.zeros((len(keys), labels.shape[1]), dtype=bool)
    np.logical_or.at(plabels, of, labels.astype(bool))
    return kfold(plabels, k, seed)[of]


def validation_split(items: list[Item], val_fold: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) record indices: PTB-XL's ``#StratFold == val_fold`` patients out.

    Every record of a validation patient (an ``HR`` twin included) is kept
    out of training; records of other sources all train.
    """
    val_patients = {it.patient for it in items if it.strat_fold == val_fold}
    is_val = np.array([it.patient in val_patients for it in items])
    is_fold = np.array([it.strat_fold == val_fold for it in items])
    train = np.flatnonzero(~is_val)
    val = np.flatnonzero(is_fold)  # the twins of another source are not scored twice
    return train, val


def source_folds(items: list[Item]) -> tuple[np.ndarray, list[str]]:
    """Leave-one-source-out: fold index of each record and the source of each fold."""
    sources = sorted({it.source for it in items})
    return np.array([sources.index(it.source) for it in items]), sources

"""The model bundle: the one reader (and writer) of what the trainer ships to the edge.

A bundle is a folder, or one ``.tar.gz``/``.tgz``/``.zip`` archive of it, with:

- ``extractor.onnx``: the int8 (static QDQ) feature extractor, input
  (batch, 12, window_samples) float32 windows at the model rate; output
  (format 2) the last feature map (batch, n_features / 2, n_positions), pooled
  by ``edge.classify`` (mean and max over time, then the mean over a frame's
  windows), or (format 1) already pooled features (batch, n_features);
- ``extractor.fp32.onnx``: the same extractor in float32;
- ``head.npz``: ``codes`` [K] str, ``W`` [K, D], ``b`` [K], ``thresholds`` [K],
  ``feature_mean`` [D], ``feature_scale`` [D] (score = W @ ((f - mean) / scale) + b),
  and optionally ``platt_a`` [K], ``platt_b`` [K] (probability =
  1 / (1 + exp(-(a * score + b))), calibrated on validation records);
- ``manifest.json``: :class:`Manifest`, with the sha256 of every other file.

:func:`load_bundle` checks all of it and refuses, saying why, a bundle that
does not match. The bundle's identity (``Bundle.sha256``) is the sha256 of
its ``manifest.json``, which pins every other file.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from edge.dsp import DspConfig
from edge.errors import BundleError

FORMAT = "ecg-edge/bundle"
FORMAT_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
EXTRACTOR_INT8 = "extractor.onnx"
EXTRACTOR_FP32 = "extractor.fp32.onnx"
HEAD = "head.npz"
MANIFEST = "manifest.json"
PRECISION_FILES = {"int8": EXTRACTOR_INT8, "fp32": EXTRACTOR_FP32}
_HEAD_KEYS = ("codes", "W", "b", "thresholds", "feature_mean", "feature_scale")


@dataclass(frozen=True)
class ClassInfo:
    """One output class: SNOMED CT code (equivalents merged), abbreviation, name."""

    code: str
    abbreviation: str
    name: str


@dataclass(frozen=True)
class Manifest:
    """What a bundle is: format, preprocessing, classes, provenance, figures, checksums."""

    model: str
    n_features: int
    classes: tuple[ClassInfo, ...]
    normal_code: str
    dsp: DspConfig
    input_name: str = "frames"
    output_name: str = "features"
    training: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    self_test: dict[str, Any] = field(default_factory=dict)  # edge.reload: reference scores
    created_utc: str = ""
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.format != FORMAT:
            raise BundleError(f"manifest format is {self.format!r}, expected {FORMAT!r}")
        if self.format_version not in SUPPORTED_VERSIONS:
            raise BundleError(
                f"bundle format version {self.format_version} is not supported "
                f"(this ecg-edge reads versions {SUPPORTED_VERSIONS}); re-export the bundle"
            )
        if not self.classes:
            raise BundleError("manifest lists no classes")
        codes = [c.code for c in self.classes]
        if len(set(codes)) != len(codes):
            raise BundleError("manifest lists a class code twice")
        if self.n_features <= 0:
            raise BundleError(f"manifest n_features must be positive, got {self.n_features}")

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(c.code for c in self.classes)

    @property
    def pools_in_graph(self) -> bool:
        """Format 1: the extractor's output is already the pooled feature vector."""
        return self.format_version == 1

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "format_version": self.format_version,
            "created_utc": self.created_utc,
            "model": self.model,
            "n_features": self.n_features,
            "input_name": self.input_name,
            "output_name": self.output_name,
            "normal_code": self.normal_code,
            "classes": [c.__dict__ for c in self.classes],
            "dsp": self.dsp.to_json(),
            "training": self.training,
            "validation": self.validation,
            "files": dict(sorted(self.files.items())),
            **({"self_test": self.self_test} if self.self_test else {}),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Manifest:
        try:
            return cls(
                format=d["format"],
                format_version=int(d["format_version"]),
                created_utc=d.get("created_utc", ""),
                model=str(d["model"]),
                n_features=int(d["n_features"]),
                input_name=d.get("input_name", "frames"),
                output_name=d.get("output_name", "features"),
                normal_code=str(d["normal_code"]),
                classes=tuple(ClassInfo(**c) for c in d["classes"]),
                dsp=DspConfig.from_json(d["dsp"]),
                training=dict(d.get("training", {})),
                validation=dict(d.get("validation", {})),
                files=dict(d.get("files", {})),
                self_test=dict(d.get("self_test", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"manifest.json is malformed: {exc!r}") from exc


@dataclass(frozen=True)
class Head:
    """The per-class linear heads: score = W @ ((f - feature_mean) / feature_scale) + b."""

    codes: tuple[str, ...]
    W: np.ndarray  # (K, D) float32
    b: np.ndarray  # (K,) float32
    thresholds: np.ndarray  # (K,) float32, decide positive when score >= threshold
    feature_mean: np.ndarray  # (D,) float32
    feature_scale: np.ndarray  # (D,) float32, > 0
    platt_a: np.ndarray | None = None  # (K,) float32 > 0: calibrated probabilities
    platt_b: np.ndarray | None = None  # (K,) float32

    def __post_init__(self) -> None:
        k, d = np.shape(self.W)
        if (self.platt_a is None) != (self.platt_b is None):
            raise BundleError("head.npz: platt_a and platt_b go together")
        if self.platt_a is not None:
            for name, arr in (("platt_a", self.platt_a), ("platt_b", self.platt_b)):
                if np.shape(arr) != (k,) or not np.all(np.isfinite(arr)):
                    raise BundleError(f"head.npz: {name} must be {k} finite numbers")
            if np.any(self.platt_a <= 0):
                raise BundleError("head.npz: platt_a must be positive (scores keep their order)")
        for name, arr, shape in (
            ("b", self.b, (k,)),
            ("thresholds", self.thresholds, (k,)),
            ("feature_mean", self.feature_mean, (d,)),
            ("feature_scale", self.feature_scale, (d,)),
        ):
            if np.shape(arr) != shape:
                raise BundleError(f"head.npz: {name} has shape {np.shape(arr)}, expected {shape}")
        if len(self.codes) != k:
            raise BundleError(f"head.npz: {len(self.codes)} codes for {k} rows of W")
        arrays = (self.W, self.b, self.thresholds, self.feature_mean, self.feature_scale)
        if not all(np.all(np.isfinite(a)) for a in arrays):
            raise BundleError("head.npz holds NaN or infinite values")
        if np.any(self.feature_scale <= 0):
            raise BundleError("head.npz: feature_scale must be positive")

    def scores(self, features: np.ndarray) -> np.ndarray:
        """(n, D) features -> (n, K) decision values (float64), the same on every CPU.

        Each dot product is ``math.fsum`` of float64 products: correctly rounded
        whatever the summation order, where a BLAS ``@`` sums in an order that
        depends on the CPU's vector width (a decision exactly at a threshold
        could flip between devices).
        """
        f = np.atleast_2d(np.asarray(features, dtype=np.float64))
        z = (f - self.feature_mean.astype(np.float64)) / self.feature_scale.astype(np.float64)
        w = self.W.astype(np.float64)
        b = self.b.astype(np.float64)
        out = np.empty((z.shape[0], w.shape[0]))
        for i, row in enumerate(z):
            prods = (w * row).tolist()  # (K, D), each product correctly rounded; Python
            out[i] = [math.fsum(p) for p in prods]  # floats: fsum reads them ~2x faster
        return out + b

    @property
    def calibrated(self) -> bool:
        return self.platt_a is not None

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        """Decision values -> calibrated probabilities in [0, 1] (Platt), same shape."""
        if self.platt_a is None:
            raise BundleError("this head has no calibration (platt_a, platt_b)")
        a, b = self.platt_a.astype(np.float64), self.platt_b.astype(np.float64)
        return 1.0 / (1.0 + np.exp(-(a * np.asarray(scores, dtype=np.float64) + b)))

    def save(self, path: Path) -> None:
        extra = {}
        if self.platt_a is not None:
            extra = {
                "platt_a": self.platt_a.astype(np.float32),
                "platt_b": self.platt_b.astype(np.float32),
            }
        np.savez(
            path,
            codes=np.array(self.codes),
            W=self.W.astype(np.float32),
            b=self.b.astype(np.float32),
            thresholds=self.thresholds.astype(np.float32),
            feature_mean=self.feature_mean.astype(np.float32),
            feature_scale=self.feature_scale.astype(np.float32),
            **extra,
        )

    @classmethod
    def load(cls, path: Path) -> Head:
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = [k for k in _HEAD_KEYS if k not in z]
                if missing:
                    raise BundleError(f"head.npz lacks {', '.join(missing)}")
                platt = {k: z[k].astype(np.float32) for k in ("platt_a", "platt_b") if k in z}
                return cls(
                    codes=tuple(str(c) for c in z["codes"]),
                    **{k: z[k].astype(np.float32) for k in _HEAD_KEYS[1:]},
                    **platt,
                )
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise BundleError(f"cannot read head.npz: {exc}") from exc


@dataclass(frozen=True)
class Bundle:
    """A checked bundle on disk."""

    path: Path
    manifest: Manifest
    head: Head
    sha256: str
    signature: Any = None  # edge.signing.Verdict when load_bundle was given trusted keys

    def extractor_path(self, precision: str = "int8") -> Path:
        if precision not in PRECISION_FILES:
            raise BundleError(f"precision must be int8 or fp32, got {precision!r}")
        return self.path / PRECISION_FILES[precision]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_bundle_path() -> Path:
    """The bundle shipped inside the package."""
    return Path(str(resources.files("edge") / "default_bundle"))


def _unpack(path: Path) -> Path:
    """Extract an archive into a private temporary folder; return the bundle folder in it."""
    tmp = Path(tempfile.mkdtemp(prefix="ecg-bundle-"))
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                zf.extractall(tmp)
        else:
            with tarfile.open(path) as tf:
                tf.extractall(tmp, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BundleError(f"{path} is not a bundle folder nor a readable archive: {exc}") from exc
    found = [m.parent for m in tmp.rglob(MANIFEST)]
    if len(found) != 1:
        raise BundleError(f"archive {path} holds {len(found)} manifest.json files, expected 1")
    return found[0]


def load_bundle(
    path: str | Path | None = None, *, trust: Any = None, allow_unsigned: bool = False
) -> Bundle:
    """Open and check a bundle (default: the one shipped in the package).

    ``trust``: trusted public keys (:func:`edge.signing.trusted_keys`); when
    given, the bundle's ``manifest.sig`` must verify with one of them
    (:mod:`edge.signing`), else :class:`BundleError` says why, unless
    ``allow_unsigned`` (the verdict is then kept in ``Bundle.signature``).
    """
    p = default_bundle_path() if path is None else Path(path)
    if not p.exists():
        raise BundleError(f"bundle {p} does not exist")
    if p.is_file():
        p = _unpack(p)
    mpath = p / MANIFEST
    if not mpath.is_file():
        raise BundleError(f"{p} is not a bundle: no {MANIFEST}")
    try:
        raw = mpath.read_bytes()
        manifest = Manifest.from_json(json.loads(raw))
    except json.JSONDecodeError as exc:
        raise BundleError(f"{mpath} is not valid JSON: {exc}") from exc
    needed = (EXTRACTOR_INT8, EXTRACTOR_FP32, HEAD)
    for name in needed:
        f = p / name
        if not f.is_file():
            raise BundleError(f"bundle {p} is missing {name}")
        want = manifest.files.get(name)
        if want is None:
            raise BundleError(f"manifest of {p} gives no sha256 for {name}")
        got = sha256_file(f)
        if got != want:
            raise BundleError(
                f"{name} in {p} was altered: sha256 {got[:12]}... does not match "
                f"the manifest's {want[:12]}..."
            )
    head = Head.load(p / HEAD)
    if head.codes != manifest.codes:
        raise BundleError("head.npz classes differ from the manifest's")
    if head.W.shape[1] != manifest.n_features:
        raise BundleError(
            f"head.npz expects {head.W.shape[1]} features, manifest says {manifest.n_features}"
        )
    verdict = None
    if trust is not None:
        from edge.signing import verify_folder

        verdict = verify_folder(p, trust, raw)
        if not verdict.ok and not allow_unsigned:
            raise BundleError(f"{verdict.reason}: refusing bundle {p}")
    sha = hashlib.sha256(raw).hexdigest()
    return Bundle(path=p, manifest=manifest, head=head, sha256=sha, signature=verdict)


def write_bundle(
    out_dir: str | Path,
    manifest: Manifest,
    head: Head,
    extractor_int8: str | Path,
    extractor_fp32: str | Path,
) -> Bundle:
    """Write a bundle folder (the trainer's exporter calls this) and return it, checked."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for src, name in ((extractor_int8, EXTRACTOR_INT8), (extractor_fp32, EXTRACTOR_FP32)):
        if Path(src).resolve() != (out / name).resolve():
            shutil.copyfile(src, out / name)
    head.save(out / HEAD)
    files = {name: sha256_file(out / name) for name in (EXTRACTOR_INT8, EXTRACTOR_FP32, HEAD)}
    created = manifest.created_utc or datetime.now(timezone.utc).isoformat(timespec="seconds")
    final = Manifest(**{**manifest.__dict__, "files": files, "created_utc": created})
    (out / MANIFEST).write_text(json.dumps(final.to_json(), indent=2) + "\n")
    return load_bundle(out)

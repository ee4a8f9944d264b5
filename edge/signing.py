"""Signed bundles: Ed25519 signatures over a bundle's ``manifest.json``.

The manifest holds the sha256 of every other file of the bundle, so one
signature over its exact bytes pins the whole bundle. The signature lives
beside it in ``manifest.sig`` (JSON)::

    {"format": "ecg-edge/signature", "version": 1, "algorithm": "ed25519",
     "key_id": "3f1c...", "manifest_sha256": "...", "signed_utc": "...",
     "signature": "<base64 of the 64-byte signature>"}

Keys are PEM files (``ecg-edge keygen`` makes a pair): the private key PKCS#8,
readable by its owner only; the public key SubjectPublicKeyInfo, optionally
preceded by ``# name: value`` comment lines, of which ``not_after:
YYYY-MM-DD`` ends the key's validity (a bundle signed by an expired key is
refused). A key's id is the first 16 hex digits of the sha256 of its 32 raw
bytes.

The package ships one **demonstration** public key (``edge/keys/``), trusted
when no ``--trusted-key`` is given; its private half is in the source
repository (``keys/demo-signing-key.pem``), so anyone can sign with it: it
proves only that a bundle is intact, not who made it. A device maker
generates an own key pair and lists only its own public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from datetime import date, datetime, timezone
from importlib import resources
from pathlib import Path

from edge.errors import BundleError, ConfigError

SIGNATURE = "manifest.sig"
SIG_FORMAT = "ecg-edge/signature"
SIG_VERSION = 1


def _crypto():
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:  # pragma: no cover - a base dependency
        raise ConfigError(
            "bundle signatures need the 'cryptography' package (pip install cryptography)"
        ) from exc
    return InvalidSignature, serialization, ed25519


@dataclass(frozen=True)
class PublicKey:
    """A trusted Ed25519 public key: its 32 raw bytes, where it came from, its expiry."""

    raw: bytes
    source: str
    not_after: date | None = None

    @property
    def key_id(self) -> str:
        return key_id(self.raw)

    @property
    def demo(self) -> bool:
        """The package's demonstration key (its private half is public)."""
        return self.raw in {k.raw for k in demo_public_keys()}

    def expired(self, today: date | None = None) -> bool:
        return self.not_after is not None and (today or _today()) > self.not_after

    def verify(self, signature: bytes, message: bytes) -> bool:
        invalid_sig, _, ed25519 = _crypto()
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except invalid_sig:
            return False
        return True


@dataclass(frozen=True)
class Verdict:
    """How a bundle's signature checked out: ``ok``, the signing key, or why not."""

    ok: bool
    reason: str
    key: PublicKey | None = None
    key_id: str | None = None


def key_id(raw: bytes) -> str:
    """The short id of a raw 32-byte public key (16 hex digits)."""
    return hashlib.sha256(raw).hexdigest()[:16]


def _today() -> date:
    return datetime.now(timezone.utc).date()


# ------------------------------------------------------------------- keys


def generate_keypair(out: str | Path, *, not_after: date | None = None) -> tuple[Path, Path]:
    """Write ``OUT.key`` (private, mode 0600) and ``OUT.pub``; refuse to overwrite."""
    _, serialization, ed25519 = _crypto()
    base = Path(out)
    priv_path, pub_path = base.with_name(base.name + ".key"), base.with_name(base.name + ".pub")
    for p in (priv_path, pub_path):
        if p.exists():
            raise ConfigError(f"{p} already exists; not overwriting a key")
    base.parent.mkdir(parents=True, exist_ok=True)
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    header = [f"# ecg-edge bundle signing key {key_id(raw)}"]
    if not_after is not None:
        header.append(f"# not_after: {not_after.isoformat()}")
    pub_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pub_path.write_text("\n".join(header) + "\n" + pub_pem.decode())
    return priv_path, pub_path


def check_private_permissions(path: Path) -> None:
    """Refuse a private key file that its group or others can read or write."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"key file {path} is accessible to others (mode {stat.S_IMODE(mode):04o}); "
            f"run: chmod 600 {path}"
        )


def load_private_key(path: str | Path, *, check_permissions: bool = True):
    """An Ed25519 private key from a PEM file (owner-only permissions unless told otherwise)."""
    _, serialization, ed25519 = _crypto()
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"key file {p} does not exist")
    if check_permissions:
        check_private_permissions(p)
    try:
        key = serialization.load_pem_private_key(p.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"key file {p} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(f"key file {p} is not an Ed25519 key")
    return key


def load_public_key(path: str | Path) -> PublicKey:
    """A trusted public key from a PEM file (``# not_after: YYYY-MM-DD`` honoured)."""
    _, serialization, ed25519 = _crypto()
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"trusted key file {p} does not exist")
    text = p.read_text(errors="replace")
    not_after = None
    pem_lines = []
    for line in text.splitlines():
        if line.startswith("#"):
            name, _, value = line[1:].partition(":")
            if name.strip() == "not_after":
                try:
                    not_after = date.fromisoformat(value.strip())
                except ValueError:
                    raise ConfigError(
                        f"trusted key file {p}: not_after {value.strip()!r} is not a date "
                        "(YYYY-MM-DD)"
                    ) from None
        elif line.strip():
            pem_lines.append(line)
    if any("PRIVATE KEY" in line for line in pem_lines):
        raise ConfigError(f"trusted key file {p} holds a PRIVATE key; give the .pub file")
    try:
        key = serialization.load_pem_public_key(("\n".join(pem_lines) + "\n").encode())
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"trusted key file {p} is not a PEM public key: {exc}") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ConfigError(f"trusted key file {p} is not an Ed25519 key")
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PublicKey(raw, str(p), not_after)


def demo_key_paths() -> list[Path]:
    """The demonstration public key(s) shipped inside the package."""
    folder = Path(str(resources.files("edge") / "keys"))
    return sorted(folder.glob("*.pub")) if folder.is_dir() else []


def demo_public_keys() -> tuple[PublicKey, ...]:
    return tuple(load_public_key(p) for p in demo_key_paths())


def trusted_keys(paths: list[str | Path] | tuple = ()) -> tuple[PublicKey, ...]:
    """The keys to trust: those given, or (none given) the package's demonstration key."""
    if paths:
        return tuple(load_public_key(p) for p in paths)
    return demo_public_keys()


# ------------------------------------------------------------- signatures


def sign_bundle(folder: str | Path, private_key, *, self_test: bool = True) -> Path:
    """Sign ``folder/manifest.json`` (exact bytes) into ``folder/manifest.sig``; return it.

    The bundle must pass :func:`edge.bundle.load_bundle` first: a signature
    over a manifest that does not match its files would vouch for nothing.
    With ``self_test``, a manifest without a ``self_test`` reference gets one
    first (:func:`edge.reload.make_self_test`: the scores a live reload must
    reproduce), so the manifest changes, and its sha256 with it.
    """
    from edge.bundle import MANIFEST, Manifest, load_bundle

    _, serialization, _ = _crypto()
    p = Path(folder)
    if not p.is_dir():
        raise BundleError(f"{p} is not a bundle folder (sign the folder, then pack it)")
    bundle = load_bundle(p)
    if self_test and not bundle.manifest.self_test:
        from edge.reload import make_self_test

        m = Manifest(**{**bundle.manifest.__dict__, "self_test": make_self_test(bundle)})
        tmp = p / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(m.to_json(), indent=2) + "\n")
        os.replace(tmp, p / MANIFEST)
        load_bundle(p)
    elif self_test:  # a reference carried over from another extractor would vouch for nothing
        from edge.classify import Classifier
        from edge.reload import run_self_test

        for precision in ("int8", "fp32"):
            why = run_self_test(bundle, Classifier(bundle, precision), precision)
            if why is not None:
                raise BundleError(f"not signing {p}: {why} (remove self_test from the manifest)")
    message = (p / MANIFEST).read_bytes()
    raw = private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    doc = {
        "format": SIG_FORMAT,
        "version": SIG_VERSION,
        "algorithm": "ed25519",
        "key_id": key_id(raw),
        "manifest_sha256": hashlib.sha256(message).hexdigest(),
        "signed_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "signature": base64.b64encode(private_key.sign(message)).decode(),
    }
    out = p / SIGNATURE
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, out)  # a reader sees the old signature or the new one, never half
    return out


def verify_folder(
    folder: str | Path, keys: tuple[PublicKey, ...] | list, manifest_bytes: bytes | None = None
) -> Verdict:
    """Check ``folder/manifest.sig`` against ``keys`` (the manifest's own sums are checked
    by :func:`edge.bundle.load_bundle`, which passes the ``manifest_bytes`` it checked).
    Never raises for a bad signature: see ``reason``."""
    from edge.bundle import MANIFEST

    p = Path(folder)
    sig_path = p / SIGNATURE
    if not sig_path.is_file():
        return Verdict(False, "bundle is not signed (no manifest.sig)")
    try:
        doc = json.loads(sig_path.read_text())
        if doc.get("format") != SIG_FORMAT or doc.get("algorithm") != "ed25519":
            return Verdict(False, f"{SIGNATURE} is not an ecg-edge Ed25519 signature")
        if int(doc.get("version", 0)) > SIG_VERSION:
            return Verdict(
                False,
                f"{SIGNATURE} is signature format version {doc['version']}; "
                f"this ecg-edge reads version {SIG_VERSION}",
            )
        signature = base64.b64decode(doc["signature"], validate=True)
        kid = str(doc.get("key_id", "?"))
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        return Verdict(False, f"{SIGNATURE} is malformed: {exc}")
    message = (p / MANIFEST).read_bytes() if manifest_bytes is None else manifest_bytes
    if not keys:
        return Verdict(False, "no trusted key is configured", key_id=kid)
    for key in keys:
        if key.verify(signature, message):
            if key.expired():
                return Verdict(
                    False,
                    f"bundle is signed by key {key.key_id} ({key.source}), which expired "
                    f"on {key.not_after.isoformat()}",
                    key,
                    kid,
                )
            return Verdict(True, f"signed by key {key.key_id} ({key.source})", key, kid)
    known = {k.key_id for k in keys}
    why = "bundle signature does not verify with any trusted key"
    if kid in known:
        why += f" (the manifest or the signature of key {kid} was altered)"
    else:
        why += f" (signed by key {kid}, trusted: {', '.join(sorted(known))})"
    return Verdict(False, why, key_id=kid)


def open_verified(
    path: str | Path | None,
    trusted_key_paths: list | tuple | None = (),
    allow_unsigned: bool = False,
    warn=None,
):
    """Load a bundle for the agent: its signature must verify with a trusted key.

    With ``allow_unsigned`` a bundle that does not verify loads, and ``warn``
    (one line on stderr) says so loudly (:func:`demo_notice` is the line for
    a bundle the demonstration key verified: it proves integrity only).
    """
    import sys

    from edge.bundle import load_bundle

    def say(line: str) -> None:
        (warn or (lambda m: print(m, file=sys.stderr, flush=True)))(line)

    bundle = load_bundle(
        path, trust=trusted_keys(list(trusted_key_paths or ())), allow_unsigned=allow_unsigned
    )
    v = bundle.signature
    if not v.ok:
        say(
            f"WARNING: --allow-unsigned: {v.reason}. This bundle's origin is NOT verified: "
            "for development only, never next to a patient."
        )
    return bundle


def demo_notice(bundle) -> str | None:
    """The line to print when the running bundle's signer is the demonstration key."""
    v = bundle.signature
    if v is None or not v.ok or not v.key.demo:
        return None
    return (
        f"notice: bundle verified with the DEMONSTRATION key {v.key.key_id}, whose private "
        "half is public: the bundle is intact, but anyone could have signed it. "
        "On a device, trust your own key (--trusted-key)."
    )

"""Swap a bundle without losing the stream: load beside the old one, verify, self-test, switch.

On ``SIGHUP`` (``systemctl reload ecg-edge``, ``ecg-edge reload``) the agent
process loads the bundle again from its configured path (a device installs
a new one by an atomic rename of that path, :func:`install_bundle`), checks
its signature against the trusted keys, requires the same classes and
preprocessing as the running one (the stream's filter state and alert
states carry over), builds its classifier and runs the self-test: the
manifest's ``self_test`` holds the scores the extractor gave, when the
bundle was signed, on a reference frame drawn from a fixed seed; the new
extractor must reproduce them. Only then does the agent switch, between two
frames; on any failure it keeps the old bundle and raises a technical alert
(``condition: bundle_rejected``) that names the reason.

Frames and alerts carry the sha256 of the bundle that produced them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import BundleError, EcgEdgeError

SELF_TEST_VERSION = 1
SELF_TEST_ATOL = 1e-4  # decision values; int8 extractors repeat exactly, fp32 to rounding


def reference_frame(seed: int, n_leads: int, n_samples: int) -> np.ndarray:
    """The self-test input: (n_leads, n_samples) float32 'filtered ECG' from ``seed``."""
    rng = np.random.default_rng(seed)
    return (0.3 * rng.standard_normal((n_leads, n_samples))).astype(np.float32)


def _scores(bundle, precision: str, threads: int = 1, classifier=None) -> np.ndarray:
    from edge.classify import Classifier

    clf = classifier or Classifier(bundle, precision, threads)
    cfg = bundle.manifest.dsp
    x = reference_frame(bundle.manifest.self_test.get("seed", 0), 12, cfg.frame_samples)
    return np.asarray(clf.head.scores(clf.frame_features(x)[None])[0], dtype=np.float64)


def make_self_test(bundle, seed: int = 0) -> dict[str, Any]:
    """The manifest's ``self_test``: each precision's decision values on the reference frame."""
    from edge.bundle import Manifest

    probe = type(bundle)(**{**bundle.__dict__, "manifest": Manifest(
        **{**bundle.manifest.__dict__, "self_test": {"seed": seed}})})  # fmt: skip
    return {
        "version": SELF_TEST_VERSION,
        "seed": seed,
        "scores": {p: [float(v) for v in _scores(probe, p)] for p in ("int8", "fp32")},
    }


def run_self_test(bundle, classifier, precision: str) -> str | None:
    """None when ``classifier`` reproduces the manifest's reference scores, else why not."""
    st = bundle.manifest.self_test
    if not st or precision not in st.get("scores", {}):
        return "bundle carries no self-test reference (sign it again with ecg-train sign)"
    want = np.asarray(st["scores"][precision], dtype=np.float64)
    got = _scores(bundle, precision, classifier=classifier)
    if got.shape != want.shape:
        return f"self-test: {got.size} scores for {want.size} expected"
    worst = float(np.max(np.abs(got - want)))
    if not worst <= SELF_TEST_ATOL:
        return (
            f"self-test failed: the {precision} extractor's scores on the reference frame "
            f"differ from the manifest's by up to {worst:.3g} (tolerance {SELF_TEST_ATOL:g})"
        )
    return None


def compatible(old, new) -> str | None:
    """None when ``new`` can replace ``old`` mid-stream, else why not (restart to use it)."""
    if new.manifest.codes != old.manifest.codes or new.manifest.normal_code != (
        old.manifest.normal_code
    ):
        return "its classes differ from the running bundle's (restart the agent to use it)"
    if new.manifest.dsp != old.manifest.dsp:
        return "its preprocessing differs from the running bundle's (restart the agent to use it)"
    return None


def prepare(agent, path, trusted_keys=(), allow_unsigned=False, precision="int8", threads=1):
    """Load, verify and self-test the bundle at ``path`` for ``agent``: (bundle, classifier).

    Raises :class:`EcgEdgeError` naming the reason; the agent is not touched.
    """
    from edge.classify import Classifier
    from edge.signing import open_verified

    bundle = open_verified(path, trusted_keys, allow_unsigned, warn=lambda m: None)
    if bundle.signature is not None and not bundle.signature.ok and not allow_unsigned:
        raise BundleError(bundle.signature.reason)  # pragma: no cover - open_verified raised
    why = compatible(agent.bundle, bundle)
    if why is None:
        classifier = Classifier(bundle, precision, threads)
        why = run_self_test(bundle, classifier, precision)
    if why is not None:
        raise BundleError(why)
    return bundle, classifier


class Reloader:
    """Reload ``path`` into ``agent`` on request (a signal handler calls :meth:`request`).

    The work runs on its own thread, so the stream never waits for it; the
    switch happens in the stream thread between two frames
    (:meth:`edge.agent.Agent.swap_bundle`). ``log`` gets one line per reload.
    """

    def __init__(
        self,
        agent,
        path,
        *,
        trusted_keys=(),
        allow_unsigned: bool = False,
        precision: str = "int8",
        threads: int = 1,
        log: Callable[[str], None] = lambda m: None,
        notifier=None,
    ) -> None:
        self.agent = agent
        self.path = path
        self.kw = dict(
            trusted_keys=trusted_keys,
            allow_unsigned=allow_unsigned,
            precision=precision,
            threads=threads,
        )
        self.log = log
        self.notifier = notifier
        self._wake = threading.Event()
        self._busy = threading.Lock()
        self.results: list[str | None] = []  # None: swapped; else the reason it was rejected

    def request(self) -> None:
        """Ask for a reload (safe from a signal handler: it only starts a thread)."""
        threading.Thread(target=self.reload_now, name="reload", daemon=True).start()

    def reload_now(self) -> str | None:
        """Load, check and queue the swap; None when queued, else the reason (alerted)."""
        with self._busy:
            if self.notifier is not None:
                self.notifier.reloading()
            try:
                bundle, classifier = prepare(self.agent, self.path, **self.kw)
            except EcgEdgeError as exc:
                reason = str(exc)
                self.log(f"warning: reload refused, the running bundle stays: {reason}")
                technical_alert(self.agent, f"new bundle rejected: {reason}")
                self.results.append(reason)
            else:
                self.agent.swap_bundle(bundle, classifier)
                self.log(
                    f"reload: bundle {bundle.sha256[:12]} verified and self-tested; it scores "
                    "from the next frame on"
                )
                reason = None
                self.results.append(None)
            if self.notifier is not None:
                self.notifier.ready(f"streaming with bundle {self.agent.bundle.sha256[:12]}")
            return reason


def technical_alert(agent, reason: str, condition: str = "bundle_rejected") -> None:
    """Emit (sink and publisher) a technical alert about the device itself, now."""
    from bridge.schema import Alert, Quality

    with getattr(agent, "_lock", None) or contextlib.nullcontext():  # vs. the stream thread
        n = max(1, agent._framer.next_sample)  # the last sample in: a one-sample span
        alert = Alert(
            device_id=agent.device_id,
            event="onset",
            findings=(),
            frame=agent._span(n - 1, n, time.monotonic()),
            quality=Quality(True, (), ()),
            bundle_sha256=agent.bundle.sha256,
            latency_ms=0.0,
            kind="technical",
            priority="low",
            condition=condition,
            reason=reason,
            record=agent._record,
        )
        agent.summary.alerts += 1
        agent._emit({"type": "alert", **alert.to_json()}, alert, "alert")


def install_bundle(src: str | Path, dest: str | Path) -> Path:
    """Install the bundle folder ``src`` at ``dest`` (a symlink) atomically; return the folder.

    The bundle is copied (and synced) beside ``dest`` as ``.bundle-<sha256[:12]>``,
    then a new symlink replaces ``dest`` by one ``rename``: a power cut at any
    moment leaves ``dest`` naming the old bundle or the new one, whole. The
    bundle is checked (:func:`edge.bundle.load_bundle`) before it is linked.
    """
    from edge.bundle import load_bundle

    src, dest = Path(src), Path(dest)
    if dest.exists() and not dest.is_symlink():
        raise BundleError(
            f"{dest} is a folder, not a symlink: move it aside once (mv {dest} {dest}.orig) "
            "so that installs can switch it atomically"
        )
    sha = load_bundle(src).sha256
    folder = dest.with_name(f".bundle-{sha[:12]}")
    if not folder.exists():
        part = dest.with_name(f".bundle-{sha[:12]}.part")
        shutil.rmtree(part, ignore_errors=True)
        shutil.copytree(src, part)
        for f in [*part.rglob("*"), part]:
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.rename(part, folder)
    if load_bundle(folder).sha256 != sha:
        raise BundleError(f"{folder} does not hold bundle {sha[:12]}: remove it and retry")
    tmp = dest.with_name(f".{dest.name}.link")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(folder.name, tmp)
    os.replace(tmp, dest)  # atomic: dest is the old link or the new one
    fd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return folder


def pidfile(device_id: str) -> Path:
    """Where a running agent of ``device_id`` writes its process id (the state directory)."""
    from bridge._state import state_file

    return state_file(f"{device_id}.pid")


def write_pidfile(device_id: str) -> None:
    with contextlib.suppress(OSError):  # `ecg-edge reload --pid`, `systemctl reload` still work
        pidfile(device_id).write_text(f"{os.getpid()}\n")


def signal_reload(device_id: str, pid: int | None = None) -> int:
    """Send SIGHUP to the agent of ``device_id`` (or process ``pid``); return the pid."""
    import signal

    from edge.errors import SourceError

    if pid is None:
        f = pidfile(device_id)
        try:
            pid = int(f.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            raise SourceError(
                f"no running agent for device {device_id!r} ({f} is missing); give --pid, "
                "or under systemd: systemctl reload ecg-edge"
            ) from None
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise SourceError(f"no process {pid} (agent of {device_id!r} not running)") from None
    except PermissionError:
        raise SourceError(f"not allowed to signal process {pid} (run as its user)") from None
    return pid


def watch_storage(agent, publisher, log: Callable[[str], None], every_s: float = 2.0) -> None:
    """Raise one technical alert (``storage_full``) when the publisher's spool cannot store
    everything (full disk or ``--spool-max-mb``); a daemon thread polls it."""

    def run() -> None:
        while not agent.stopping:
            problem = getattr(publisher, "storage_problem", None)
            if problem:
                log(f"warning: {problem}")
                technical_alert(agent, problem, condition="storage_full")
                return
            time.sleep(every_s)

    threading.Thread(target=run, name="storage-watch", daemon=True).start()

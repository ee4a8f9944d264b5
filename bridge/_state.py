"""Where the agent and the bridge keep their state (alert spool, forwarder outbox).

``ECG_EDGE_STATE_DIR`` when set; else ``$STATE_DIRECTORY`` (what systemd's
``StateDirectory=`` sets for a service); else ``$XDG_STATE_HOME/ecg-edge``
(``~/.local/state/ecg-edge`` when ``XDG_STATE_HOME`` is unset), never the
current directory.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_STATE_DIR = "ECG_EDGE_STATE_DIR"


def state_dir(override: str | Path | None = None) -> Path:
    """The state directory (not created here); ``override`` wins when given."""
    if override:
        return Path(override).expanduser()
    if os.environ.get(ENV_STATE_DIR):
        return Path(os.environ[ENV_STATE_DIR]).expanduser()
    if os.environ.get("STATE_DIRECTORY"):  # systemd; may hold several, colon-separated
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base).expanduser() / "ecg-edge"


def state_file(name: str, override: str | Path | None = None) -> Path:
    """``state_dir() / name``, its folder created."""
    path = state_dir(override) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path

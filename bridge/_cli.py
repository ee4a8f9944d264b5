"""What every CLI shares: one line on stderr and a non-zero exit for bad input."""

from __future__ import annotations

import sys
from collections.abc import Callable

import typer

from bridge.errors import EcgEdgeError

EXIT_BAD_INPUT = 2


def run_app(app: typer.Typer, argv: list[str] | None = None) -> int:
    """Run a typer app; an :class:`EcgEdgeError` becomes ``error: <message>`` and exit 2."""
    try:
        app(args=argv, standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0)
    except EcgEdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def entry_point(app: typer.Typer) -> Callable[[], None]:
    """A console-script ``main`` for ``app``."""

    def main() -> None:
        sys.exit(run_app(app))

    return main

"""The edge's name for the CLI helpers every command shares (defined in :mod:`bridge._cli`)."""

from bridge._cli import EXIT_BAD_INPUT, entry_point, run_app

__all__ = ["EXIT_BAD_INPUT", "entry_point", "run_app"]

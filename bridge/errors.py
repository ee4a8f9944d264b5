"""One way to say "bad input": the exception tree and the check helpers.

Every message reads alike, e.g. ``Invalid value for 'fs': expected a positive
number, got -500``. The CLIs catch :class:`EcgEdgeError` and print its message
on one line with a non-zero exit; nothing else is ever shown to a user as a
traceback.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


class EcgEdgeError(Exception):
    """Base of every error ecg-edge raises on purpose (bad input, bad state)."""


class ConfigError(EcgEdgeError, ValueError):
    """A parameter or option has an invalid value."""


class RecordError(EcgEdgeError):
    """A WFDB record cannot be used (missing file, bad header, missing lead...)."""

    def __init__(self, record: str, reason: str) -> None:
        self.record = str(record)
        self.reason = reason
        super().__init__(f"Record {self.record}: {reason}")


class BundleError(EcgEdgeError):
    """A model bundle is missing, altered or of another format."""


class SourceError(EcgEdgeError):
    """A sample source (serial port, replay) cannot be opened or read."""


class ScoringError(EcgEdgeError):
    """Labels or Challenge output files cannot be scored."""


class PublishError(EcgEdgeError):
    """The MQTT side is misconfigured (bad URL, unreadable certificate...)."""


def _fmt(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def invalid(name: str, expected: str, got: Any) -> ConfigError:
    """Build the standard error for a bad parameter value.

    >>> str(invalid("fs", "a positive number", -500))
    "Invalid value for 'fs': expected a positive number, got -500"
    """
    error = ConfigError(f"Invalid value for {name!r}: expected {expected}, got {_fmt(got)}")
    error.param = name  # the CLIs name the flag instead (bridge._cli.with_flag_names)
    return error


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    """Return ``value`` if it is a finite positive number, else raise ConfigError.

    >>> check_positive("fs", 500)
    500
    """
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        what = "a non-negative number" if allow_zero else "a positive number"
        raise invalid(name, what, value)
    return value


def check_int(name: str, value: Any, *, min_value: int | None = None) -> int:
    """Return ``value`` if it is an int (not bool) >= ``min_value``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid(name, "an integer", value)
    if min_value is not None and value < min_value:
        raise invalid(name, f"an integer >= {min_value}", value)
    return value


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``.

    >>> check_choice("precision", "int8", ("int8", "fp32"))
    'int8'
    """
    choices = tuple(choices)
    if value not in choices:
        raise invalid(name, "one of " + ", ".join(_fmt(c) for c in choices), value)
    return value


def check_shape(name: str, array: Any, shape: tuple[int | None, ...]) -> Any:
    """Check ``array.shape`` against ``shape`` (None matches any size)."""
    got = getattr(array, "shape", None)
    if (
        got is None
        or len(got) != len(shape)
        or any(want is not None and want != have for want, have in zip(shape, got))
    ):
        want = "(" + ", ".join("n" if s is None else str(s) for s in shape) + ")"
        raise invalid(name, f"an array of shape {want}", got)
    return array

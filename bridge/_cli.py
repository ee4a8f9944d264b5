"""What every CLI shares: one line on stderr and a non-zero exit for bad input.

:func:`run_app` runs a typer app with what all three commands (``ecg-edge``,
``ecg-bridge``, ``ecg-train``) offer alike: ``-h``/``--help``, ``--version``,
``--quiet``/``-q`` and ``--log-level`` (before or after the subcommand),
boolean flags shown as flags in ``--help``, errors that name the command-line
flag (``--hop-s``) rather than the Python parameter (``'hop_s'``), and a
missing training dependency reported as the one line that fixes it.

Exit codes: 0 success, 1 a failure at run time reported by the command, 2 bad
input (an option, a file, a record, a bundle), 130 interrupted.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from importlib import metadata

import typer

from bridge.errors import ConfigError, EcgEdgeError

EXIT_BAD_INPUT = 2
LOG_LEVELS = ("debug", "info", "warning", "error")
# Modules only the training extras install, and the line that installs them.
_EXTRAS = {
    "torch": "train",
    "sklearn": "train",
    "onnx": "train",
    "matplotlib": "train",
    "tqdm": "train",
}


class _Output:
    """What ``--quiet`` and ``--log-level`` chose for this process."""

    quiet = False
    log_level = "warning"


OUTPUT = _Output()


def quiet() -> bool:
    """True when ``--quiet`` was given: print alerts, warnings and errors only."""
    return OUTPUT.quiet


def use_color(stream) -> bool:
    """ANSI colours only on a terminal, and never when ``NO_COLOR`` is set (no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    return bool(getattr(stream, "isatty", None) and stream.isatty())


def version() -> str:
    """The installed package's version (the source tree's when not installed)."""
    try:
        return metadata.version("ecg-edge")
    except metadata.PackageNotFoundError:  # pragma: no cover - a source checkout
        return "0.1.0"


def _set_quiet(value: bool) -> bool:
    if value:
        OUTPUT.quiet = True
        _set_level("error")
    return value


def _set_level(value: str | None) -> str | None:
    if value is None:
        return value
    value = value.lower()
    if value not in LOG_LEVELS:
        raise typer.BadParameter(f"expected one of {', '.join(LOG_LEVELS)}, got {value!r}")
    OUTPUT.log_level = value
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger().setLevel(value.upper())
    return value


def _print_version(ctx: typer.Context, value: bool) -> bool:
    if value and not ctx.resilient_parsing:
        print(f"{ctx.find_root().info_name} {version()}")
        raise typer.Exit(0)
    return value


def _shared_params() -> list:
    """--quiet/-q, --log-level, --version as typer builds them (its own option class)."""
    proto = typer.Typer(add_completion=False)

    @proto.command()
    def shared(
        quiet: bool = typer.Option(
            False, "--quiet", "-q", callback=_set_quiet, help="Print only alerts, warnings, errors."
        ),
        log_level: str | None = typer.Option(
            None,
            "--log-level",
            callback=_set_level,
            metavar="LEVEL",
            help="Log from this level up: debug, info, warning (default), error.",
        ),
        version: bool = typer.Option(
            False, "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ) -> None:
        """Unused: only its options are taken."""

    params = list(typer.main.get_command(proto).params)
    for param in params:
        param.expose_value = False
    return params


def _common_options(command, *, root: bool) -> None:
    """Add --quiet, --log-level (and --version on the root) where the names are free."""
    taken = {o for p in command.params for o in [*getattr(p, "opts", []), *p.secondary_opts]}
    for param in _shared_params():
        if param.name == "version" and not root:
            continue
        if taken.intersection(param.opts):
            continue
        command.params.append(param)


def _walk(command):
    yield command
    if hasattr(command, "commands"):  # a group
        for sub in command.commands.values():
            yield from _walk(sub)


def _flag_help(get_help_option):
    def wrapped(ctx):
        option = get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    return wrapped


def build_command(app: typer.Typer):
    """The click command of ``app`` with the shared options, -h and flags shown as flags."""
    command = typer.main.get_command(app)
    command.context_settings = {
        **(command.context_settings or {}),
        "help_option_names": ["-h", "--help"],
    }
    for cmd in _walk(command):
        _common_options(cmd, root=cmd is command)
        for p in cmd.params:
            if getattr(p, "is_flag", False):
                p.metavar = ""  # typer would show `--json <bool>`: a flag takes no value
        cmd.get_help_option = _flag_help(cmd.get_help_option)
    return command


def flag_names(command) -> dict[str, str]:
    """Python parameter name -> its command-line flag (``hop_s`` -> ``--hop-s``)."""
    out: dict[str, str] = {}
    for cmd in _walk(command):
        for p in cmd.params:
            if getattr(p, "param_type_name", "") == "option" and p.name and p.opts:
                longs = [o for o in p.opts if o.startswith("--")]
                out.setdefault(p.name, (longs or p.opts)[0])
    return out


def with_flag_names(exc: EcgEdgeError, command) -> str:
    """The error's message, with a parameter named as the flag a user types."""
    message = str(exc)
    name = getattr(exc, "param", None)
    if isinstance(exc, ConfigError) and name:
        flag = flag_names(command).get(str(name))
        if flag is not None:
            message = message.replace(repr(str(name)), flag, 1)
    return message


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """One line naming the install that provides a missing module, or None."""
    top = (exc.name or "").split(".")[0]
    extra = _EXTRAS.get(top)
    if extra is None:
        return None
    return (
        f"this command needs the training extras (module {top!r} is not installed): "
        f"pip install -e '.[{extra}]'"
    )


def run_app(app: typer.Typer, argv: list[str] | None = None) -> int:
    """Run a typer app; an :class:`EcgEdgeError` becomes ``error: <message>`` and exit 2."""
    command = build_command(app)
    try:
        command.main(args=argv, standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    except EcgEdgeError as exc:
        print(f"error: {with_flag_names(exc, command)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ModuleNotFoundError as exc:
        line = missing_extra(exc)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        OUTPUT.quiet, OUTPUT.log_level = False, "warning"
    return 0


def entry_point(app: typer.Typer) -> Callable[[], None]:
    """A console-script ``main`` for ``app``."""

    def main() -> None:
        sys.exit(run_app(app))

    return main

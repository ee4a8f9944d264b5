"""``ecg-edge config check|show``, ``keygen``, ``install``, ``reload``: the deployment commands."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import typer

from edge.errors import ConfigError, invalid

config_app = typer.Typer(
    no_args_is_help=True, help="Check a configuration file, or show the effective configuration."
)


@config_app.command("check")
def config_check(
    path: Path = typer.Argument(..., help="The configuration file (TOML)."),
) -> None:
    """Validate a configuration file: one line per problem, naming the key; exit 2 if any."""
    from edge.config import read_document

    _, problems = read_document(path)
    for p in problems:
        typer.echo(f"{path}: {p}", err=True)
    if problems:
        raise typer.Exit(2)
    typer.echo(f"{path}: ok")


@config_app.command("show")
def config_show(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, "--config", help="The configuration file (TOML)."),
    command: str = typer.Option("run", "--command", help="run or replay: the options it takes."),
) -> None:
    """Print the configuration a run would use, each value with where it comes from."""
    from edge.config import KEYS, load_file, to_toml_value

    if command not in ("run", "replay"):
        raise invalid("command", "'run' or 'replay'", command)
    cfg = load_file(config) if config is not None else None
    root = ctx.find_root().command
    params = {p.name: p for p in root.commands[command].params}
    values = cfg.for_command(command) if cfg else {}
    section = None
    for key in KEYS:
        if command not in key.commands:
            continue
        if key.section != section:
            section = key.section
            typer.echo(f"{'' if section == 'source' else chr(10)}[{section}]")
        if key.target in values:
            value, source = values[key.target], str(cfg.path)
        else:
            default = params[key.target].default if key.target in params else None
            value, source = (None if default in ((), []) else default), "default"
        shown = to_toml_value([str(v) for v in value] if isinstance(value, list) else value)
        if isinstance(value, Path):
            shown = to_toml_value(str(value))
        typer.echo(f"{key.name} = {shown}  # {source}")


def keygen(
    out: Path = typer.Argument(..., help="Writes OUT.key (private, mode 0600) and OUT.pub."),
    expires: str | None = typer.Option(
        None, "--expires", help="Last day (YYYY-MM-DD) the public key is trusted."
    ),
) -> None:
    """Make an Ed25519 key pair for signing bundles (ecg-train sign BUNDLE --key OUT.key)."""
    from edge.signing import generate_keypair, key_id, load_public_key

    not_after = None
    if expires is not None:
        try:
            not_after = date.fromisoformat(expires)
        except ValueError:
            raise invalid("expires", "a date YYYY-MM-DD", expires) from None
    if out.suffix in (".key", ".pub"):
        raise ConfigError(f"give OUT without .key/.pub (got {out}): {out.with_suffix('')}")
    priv, pub = generate_keypair(out, not_after=not_after)
    kid = key_id(load_public_key(pub).raw)
    typer.echo(f"private key {priv} (keep it off the devices; sign with: ecg-train sign B --key)")
    typer.echo(f"public key  {pub} (key id {kid}; on devices: --trusted-key / trusted_key)")


def reload(
    device_id: str = typer.Option("edge-1", "--device-id", help="The running agent's device id."),
    pid: int | None = typer.Option(None, "--pid", help="Its process id (default: its pid file)."),
) -> None:
    """Make a running agent load its bundle again: verified, self-tested, swapped between frames."""
    from edge.reload import signal_reload

    n = signal_reload(device_id, pid)
    typer.echo(f"asked agent {n} to reload its bundle (its log says whether it swapped)")


def install(
    bundle: Path = typer.Argument(..., help="The new bundle folder (signed)."),
    dest: Path = typer.Argument(..., help="The symlink the agent's --bundle names."),
    trusted_keys: list[Path] | None = typer.Option(
        None, "--trusted-key", help="Public key the bundle must verify with (repeatable)."
    ),
) -> None:
    """Verify a bundle, then install it at DEST by one atomic rename (then: ecg-edge reload)."""
    from edge.reload import install_bundle
    from edge.signing import open_verified

    b = open_verified(bundle, trusted_keys or [])
    folder = install_bundle(bundle, dest)
    typer.echo(f"installed bundle {b.sha256[:12]} ({b.signature.reason}) at {dest} -> {folder}")


def register(app: typer.Typer) -> None:
    """Add ``config``, ``keygen`` and ``reload`` to the ``ecg-edge`` app."""
    app.add_typer(config_app, name="config")
    app.command("keygen")(keygen)
    app.command("reload")(reload)
    app.command("install")(install)

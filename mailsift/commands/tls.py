"""``mailsift tls selfsigned --out DIR``: a self-signed certificate and key for local use."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

tls_app = typer.Typer(
    name="tls", help="TLS certificates for the SMTP filter.", no_args_is_help=True
)


@tls_app.command("selfsigned")
def selfsigned(
    out: Annotated[Path, typer.Option(help="Folder for cert.pem and key.pem")],
    hostname: Annotated[
        str | None, typer.Option(help="Certificate name (default: smtp.hostname)")
    ] = None,
    days: Annotated[int, typer.Option(min=1, help="Validity in days")] = 365,
    force: Annotated[bool, typer.Option(help="Replace existing files")] = False,
) -> None:
    """Write a self-signed certificate (EC P-256) and its key (mode 0600)."""
    from mailsift.config import get_settings
    from mailsift.smtpd.tls import generate_selfsigned

    name = hostname or get_settings().smtp.hostname
    try:
        cert, key = generate_selfsigned(out, name, days=days, overwrite=force)
    except FileExistsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"certificate {cert}\nkey         {key}")
    typer.echo(f"set MAILSIFT_SMTP__TLS_CERT={cert} MAILSIFT_SMTP__TLS_KEY={key}")


def register(app: typer.Typer) -> None:
    app.add_typer(tls_app, name="tls")

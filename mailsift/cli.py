"""The `mailsift` command line. Each area registers its commands from its own module."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="mailsift",
    help="An ML-centred email spam filter: score, train, serve, learn from users.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# Each module defines `register(app: typer.Typer) -> None`.
COMMAND_MODULES: list[str] = [
    "mailsift.commands.quarantine",
    "mailsift.commands.train",
    "mailsift.commands.evaluate",
    "mailsift.commands.models",
    "mailsift.commands.corpus",
    "mailsift.commands.score",
    "mailsift.commands.serve",
    "mailsift.commands.smtp",
    "mailsift.commands.milter",
    "mailsift.commands.spamd",
    "mailsift.commands.tls",
    "mailsift.commands.accounts",
    "mailsift.commands.keys",
    "mailsift.commands.feedback",
    "mailsift.commands.learnpipe",
    "mailsift.commands.lists",
    "mailsift.commands.rules",
    "mailsift.commands.checks",
    "mailsift.commands.retrain",
]

for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


@app.command("version")
def version() -> None:
    """Print the mailsift version."""
    from mailsift import __version__

    typer.echo(__version__)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

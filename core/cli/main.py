"""`dualwrite`: the command line (typer). Each command group is a module with its own `app`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from core import __version__
from core.cli import activity, alerts, errors, maps, metrics, ops, profile, sync, vt

app = typer.Typer(
    name="dualwrite",
    help="Dual-write engine for Dynamics 365",
    no_args_is_help=True,
    add_completion=False,
    # A traceback must never print the locals: they may hold keys and tokens.
    pretty_exceptions_show_locals=False,
)


@app.command()
def version() -> None:
    """Print the engine version."""
    sys.stdout.write(f"dualwrite {__version__}\n")


app.command()(ops.health)
app.command()(ops.deploy)
app.command()(metrics.metrics)

# Command groups register here, one module each.
app.add_typer(maps.app, name="maps")
app.add_typer(sync.app, name="sync")
app.add_typer(errors.app, name="errors")
app.add_typer(activity.app, name="activity")
app.add_typer(alerts.app, name="alerts")
app.add_typer(profile.app, name="profile")
app.add_typer(vt.app, name="vt")


def main(argv: Sequence[str] | None = None, *, obj: object = None) -> int:
    """Run the command line and return its exit code (2 for usage errors, as the console scripts expect).

    `obj` reaches the commands as the context's object: tests pass `api.Seams` (an HTTP transport, no sleeping).
    """
    command = typer.main.get_command(app)
    try:
        command.main(args=list(sys.argv[1:] if argv is None else argv), prog_name="dualwrite", obj=obj)
    except SystemExit as done:
        code = done.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

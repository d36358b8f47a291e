"""`dualwrite profile ...`: named engines (URL and key) in the profile file, so `--profile prod` (or
DUALWRITE_PROFILE, or the file's default) stands for `--url ... --key ...`. Keys are never printed in full.

The file and the order in which flags, profiles, the environment and the local stack are asked: core.cli.config.
"""

from __future__ import annotations

import getpass
import sys
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from core.cli import config
from core.cli.api import AsJson, print_json, stream_console
from core.cli.config import Profile, ProfileError, Profiles

app = typer.Typer(
    name="profile", no_args_is_help=True,
    help=f"Named engines (URL and key) for --profile NAME, {config.PROFILE_ENV} or the default profile; the file is "
         f"{config.CONFIG_ENV}, else ~/.config/dualwrite/profiles.toml (written 0600).",
)

Name = Annotated[str, typer.Argument(metavar="NAME", show_default=False, help="the profile's name")]


def _fail(error: ProfileError) -> typer.Exit:
    stream_console(stderr=True).print(Text(str(error)))
    return typer.Exit(error.exit_code)


def _load() -> Profiles:
    try:
        profiles = config.load_profiles()
    except ProfileError as error:
        raise _fail(error) from None
    for warning in profiles.warnings:
        stream_console(stderr=True).print(Text(f"warning: {warning}"))
    return profiles


def _save(profiles: Profiles) -> None:
    try:
        config.save_profiles(profiles)
    except ProfileError as error:
        raise _fail(error) from None


def _read_key(name: str) -> str:
    """The key asked for without echo on a terminal, else the first line of stdin (`... | dualwrite profile add`)."""
    if sys.stdin.isatty():
        return getpass.getpass(f"key for profile {name} (not shown; empty: none): ")
    return sys.stdin.readline().strip()


@app.command()
def add(
    name: Name,
    url: Annotated[str, typer.Option("--url", show_default=False, help="the engine's base URL")],
    key: Annotated[str | None, typer.Option(
        "--key", show_default=False,
        help="its master (admin) key; without it the key is asked for (not shown), or read from stdin when that "
             "is no terminal: a key on the command line stays in the shell's history")] = None,
    default: Annotated[bool, typer.Option(
        "--default", help="make it the default profile: commands without --url/--profile then go there")] = False,
) -> None:
    """Add profile NAME (or replace it), with its URL and key; the file is written readable by you only (0600)."""
    try:
        config.check_name(name)
        url = config.check_url(url)
    except ProfileError as error:
        raise _fail(error) from None
    profiles = _load()
    if key is None:
        key = _read_key(name)
    replaced = name in profiles.profiles
    profiles.profiles[name] = Profile(name, url, key or None)
    if default:
        profiles.default = name
    _save(profiles)
    out = stream_console()
    out.print(Text(f"{'replaced' if replaced else 'added'} profile {name}: {url}"
                   + (f", key {config.mask(key)}" if key else ", no key")
                   + (" (the default)" if profiles.default == name else "")))
    out.print(Text(f"in {profiles.path}"))
    if profiles.default != name:
        out.print(Text(f"use it with: --profile {name}, or {config.PROFILE_ENV}={name}"))


def _in_use() -> tuple[config.Connection | None, str | None]:
    """Where a command would go now, or why it could not tell."""
    try:
        return config.resolve(), None
    except ProfileError as error:
        return None, str(error)


@app.command(name="list")
def list_(as_json: AsJson = False) -> None:
    """The profiles (keys masked), the default one, and where commands go now with no flags."""
    profiles = _load()
    in_use, problem = _in_use()
    if as_json:
        answer: dict[str, Any] = {
            "path": str(profiles.path), "default": profiles.default,
            "profiles": [{"name": p.name, "url": p.url, "key": config.mask(p.key)}
                         for p in sorted(profiles.profiles.values(), key=lambda p: p.name)],
            "in_use": None if in_use is None else {
                "url": in_use.url, "url_from": in_use.url_from, "key": config.mask(in_use.key),
                "key_from": in_use.key_from, "profile": in_use.profile},
        }
        if problem:
            answer["problem"] = problem
        print_json(answer)
        return
    out = stream_console()
    if not profiles.profiles:
        out.print(Text(f"no profiles in {profiles.path}; add one with: dualwrite profile add NAME --url URL"))
    else:
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("name", "url", "key", ""):
            table.add_column(column, no_wrap=column != "url", overflow="fold")
        for profile in sorted(profiles.profiles.values(), key=lambda p: p.name):
            table.add_row(Text(profile.name), Text(profile.url), Text(config.mask(profile.key) or "none"),
                          "default" if profile.name == profiles.default else "")
        out.print(table)
        out.print(Text(f"in {profiles.path}"))
    if in_use is not None:
        out.print(Text(f"without flags, commands go to {in_use.url} (from {in_use.url_from}) with the key "
                       f"{config.mask(in_use.key)} (from {in_use.key_from})"))
    else:
        stream_console(stderr=True).print(Text(f"without flags, commands stop: {problem}"))


@app.command()
def remove(name: Name) -> None:
    """Remove profile NAME (if it was the default, there is no default any more)."""
    profiles = _load()
    if name not in profiles.profiles:
        known = ", ".join(sorted(profiles.profiles)) or "none"
        raise _fail(ProfileError(f"no profile {name!r} in {profiles.path} (profiles: {known})"))
    del profiles.profiles[name]
    was_default = profiles.default == name
    if was_default:
        profiles.default = None
    _save(profiles)
    stream_console().print(Text(f"removed profile {name}" + ("; there is no default profile now" if was_default
                                                            else "")))


@app.command(name="default")
def default_(
    name: Annotated[str | None, typer.Argument(metavar="NAME", show_default=False,
                                               help="the profile to use when none is named")] = None,
    none: Annotated[bool, typer.Option("--none", help="no default: commands without flags go to the local stack")]
    = False,
) -> None:
    """Make NAME the default profile (or, with --none, have none); without either, print the default."""
    if name and none:
        raise typer.BadParameter("give NAME or --none, not both")
    profiles = _load()
    out = stream_console()
    if not name and not none:
        out.print(Text(profiles.default or f"no default profile (commands without flags go to {config.LOCAL_URL})"))
        return
    if name and name not in profiles.profiles:
        known = ", ".join(sorted(profiles.profiles)) or "none"
        raise _fail(ProfileError(f"no profile {name!r} in {profiles.path} (profiles: {known})", config.EXIT_USAGE))
    profiles.default = name
    _save(profiles)
    out.print(Text(f"default profile: {name}" if name else "no default profile"))

"""Where the CLI finds the engine and which key it sends: flags, a profile, the environment, else the local stack.

For the URL and for the key, the first of these that gives one wins:

1. `--url` / `--key`;
2. the profile named by `--profile NAME` (command line beats environment; DUALWRITE_PROFILE and the default profile
   are then not asked);
3. `DUALWRITE_URL` / `DUALWRITE_KEY`;
4. the profile named by `DUALWRITE_PROFILE`, else the profile file's `default`;
5. the local stack of `make run`: `http://127.0.0.1:7071` (devstack/up.py) and the master key the local host
   takes (`DEVHOST_MASTER_KEY` from the environment, else local.settings.json, else local.settings.sample.json,
   else `local-master-key`).

A profile's key goes only to that profile's URL: with a URL from elsewhere (`--url`, `DUALWRITE_URL`) the profile's
key is passed over, so a production key never travels to a URL typed for something else.

Profiles live in a TOML file (`$DUALWRITE_CONFIG`, else `$XDG_CONFIG_HOME/dualwrite/profiles.toml`, else
`~/.config/dualwrite/profiles.toml`), read with tomllib and written by `dualwrite profile` only (owner read/write,
0600; comments are not kept):

    default = "prod"

    [profiles.prod]
    url = "https://dw-prod.azurewebsites.net"
    key = "..."
"""

from __future__ import annotations

import json
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

URL_ENV = "DUALWRITE_URL"
KEY_ENV = "DUALWRITE_KEY"
PROFILE_ENV = "DUALWRITE_PROFILE"
CONFIG_ENV = "DUALWRITE_CONFIG"

# The local stack of `make run`: the host's address as devstack/up.py starts it, its key as the host reads it.
LOCAL_URL = "http://127.0.0.1:7071"
LOCAL_KEY = "local-master-key"
MASTER_KEY_SETTING = "DEVHOST_MASTER_KEY"
# Where the local host reads its keys, relative to the working directory as the host reads them.
SETTINGS_FILES = ("local.settings.json", "local.settings.sample.json")

NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
EXIT_USAGE = 2


class ProfileError(Exception):
    """The profile file cannot be read or written, or has no such profile; `exit_code` 2 for a name the user gave."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Profile:
    name: str
    url: str
    key: str | None = None


@dataclass
class Profiles:
    """The profile file as read (empty when there is none); `warnings` say what the user should fix."""

    path: Path
    default: str | None = None
    profiles: dict[str, Profile] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def config_path() -> Path:
    """$DUALWRITE_CONFIG, else $XDG_CONFIG_HOME/dualwrite/profiles.toml, else ~/.config/dualwrite/profiles.toml."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "dualwrite" / "profiles.toml"


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise ProfileError(f"profile name {name!r}: use letters, digits, '-' and '_' (at most 64)", EXIT_USAGE)
    return name


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ProfileError(f"url {url!r}: not an http(s) URL such as https://dw-prod.azurewebsites.net", EXIT_USAGE)
    return url.rstrip("/")


def load_profiles(path: Path | None = None) -> Profiles:
    """The profiles in the file; none when it does not exist. A file that is not what `dualwrite profile` writes
    is a ProfileError naming the file and what is wrong."""
    path = path or config_path()
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except FileNotFoundError:
        return Profiles(path)
    except OSError as error:
        raise ProfileError(f"cannot read the profile file {path}: {error}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ProfileError(f"the profile file {path} is not valid TOML: {error}") from None
    found = Profiles(path)
    default = document.get("default")
    if default is not None and not isinstance(default, str):
        raise ProfileError(f"{path}: default must be a profile name (a string)")
    found.default = default or None
    tables = document.get("profiles", {})
    if not isinstance(tables, dict):
        raise ProfileError(f"{path}: profiles must be a table of [profiles.NAME] tables")
    for name, values in tables.items():
        if not isinstance(values, dict) or not isinstance(values.get("url"), str) or not values["url"]:
            raise ProfileError(f"{path}: profile {name!r} has no url")
        key = values.get("key")
        if key is not None and not isinstance(key, str):
            raise ProfileError(f"{path}: profile {name!r}: key must be a string")
        found.profiles[name] = Profile(name, values["url"].rstrip("/"), key or None)
    if os.name == "posix" and mode & 0o077 and any(p.key for p in found.profiles.values()):
        found.warnings.append(f"the profile file {path} holds keys and others can read it "
                              f"(mode {stat.S_IMODE(mode):04o}): chmod 600 {path}")
    return found


def _toml_string(value: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped, everything else as it is."""
    escapes = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
    out = []
    for char in value:
        if char in escapes:
            out.append(escapes[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def render(profiles: Profiles) -> str:
    lines = ["# dualwrite profiles, written by `dualwrite profile`: keys are secrets, keep this file 0600.", ""]
    if profiles.default:
        lines += [f"default = {_toml_string(profiles.default)}", ""]
    for name in sorted(profiles.profiles):
        profile = profiles.profiles[name]
        lines.append(f"[profiles.{check_name(name)}]")
        lines.append(f"url = {_toml_string(profile.url)}")
        if profile.key:
            lines.append(f"key = {_toml_string(profile.key)}")
        lines.append("")
    return "\n".join(lines)


def save_profiles(profiles: Profiles) -> None:
    """Write the file whole, readable and writable by its owner only (0600), replacing it in one step."""
    path = profiles.path
    text = render(profiles)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o600)  # O_CREAT's mode does not apply to a leftover temporary file
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise ProfileError(f"cannot write the profile file {path}: {error}") from None


def mask(key: str | None) -> str:
    """A key as it may be shown: its first 4 characters, never more than a third of it."""
    if not key:
        return ""
    shown = min(4, len(key) // 3)
    return f"{key[:shown]}… ({len(key)} characters)"


# --- the local stack ------------------------------------------------------------------------------------


def local_master_key(directory: Path | None = None) -> tuple[str, str]:
    """The master key the local host takes, and where it comes from: the environment wins over the settings file,
    as for the host itself; local.settings.json, falling back to the committed sample; else the sample's value."""
    value = os.environ.get(MASTER_KEY_SETTING)
    if value:
        return value, MASTER_KEY_SETTING
    for name in SETTINGS_FILES:
        path = (directory or Path.cwd()) / name
        try:
            values = json.loads(path.read_text(encoding="utf-8")).get("Values") or {}
        except (OSError, ValueError, AttributeError):
            continue
        found = values.get(MASTER_KEY_SETTING) if isinstance(values, dict) else None
        if isinstance(found, str) and found:
            return found, f"{MASTER_KEY_SETTING} of {name}"
    return LOCAL_KEY, "the local stack's default"


# --- resolution -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Connection:
    """Where the engine is and the key it is sent, each with where it came from (`--url`, `DUALWRITE_KEY`,
    `profile prod`, `the local stack`...), for messages; `profile` is the profile in use, if any."""

    url: str
    key: str
    url_from: str
    key_from: str
    profile: str | None = None
    warnings: tuple[str, ...] = ()


def same_url(a: str, b: str) -> bool:
    first, second = urlsplit(a.rstrip("/")), urlsplit(b.rstrip("/"))
    return (first.scheme.lower(), first.netloc.lower(), first.path) == (
        second.scheme.lower(), second.netloc.lower(), second.path)


def _chosen(profiles: Profiles, name: str, given_by: str) -> Profile:
    profile = profiles.profiles.get(name)
    if profile is None:
        known = ", ".join(sorted(profiles.profiles)) or "none yet; add one with: dualwrite profile add"
        raise ProfileError(f"no profile {name!r} ({given_by}) in {profiles.path} (profiles: {known})", EXIT_USAGE)
    return profile


def resolve(url: str | None = None, key: str | None = None, profile: str | None = None, *,
            directory: Path | None = None) -> Connection:
    """The connection for a command: see the module's docstring for the order. The profile file is read only
    when a profile is named or something is still missing after the flags and the environment."""
    env_url, env_key, env_profile = (os.environ.get(name) or None for name in (URL_ENV, KEY_ENV, PROFILE_ENV))
    flag_profile: Profile | None = None
    quiet_profile: Profile | None = None  # DUALWRITE_PROFILE or the file's default
    warnings: tuple[str, ...] = ()
    if profile or env_profile or not (url or env_url) or not (key or env_key):
        profiles = load_profiles()
        warnings = tuple(profiles.warnings)
        if profile:  # the command line's profile: DUALWRITE_PROFILE and the default are not asked
            flag_profile = _chosen(profiles, profile, "--profile")
        elif env_profile:
            quiet_profile = _chosen(profiles, env_profile, PROFILE_ENV)
        elif profiles.default:
            quiet_profile = _chosen(profiles, profiles.default, f"the default of {profiles.path}")

    urls: list[tuple[str | None, str]] = [
        (url, "--url"),
        (flag_profile.url if flag_profile else None, f"profile {profile}"),
        (env_url, URL_ENV),
        (quiet_profile.url if quiet_profile else None, f"profile {quiet_profile.name}" if quiet_profile else ""),
        (LOCAL_URL, "the local stack"),
    ]
    chosen_url, url_from = next((value.rstrip("/"), source) for value, source in urls if value)

    def bound(candidate: Profile | None) -> str | None:
        """The profile's key, if the URL in use is the profile's own."""
        return candidate.key if candidate and candidate.key and same_url(candidate.url, chosen_url) else None

    keys: list[tuple[str | None, str]] = [
        (key, "--key"),
        (bound(flag_profile), f"profile {profile}"),
        (env_key, KEY_ENV),
        (bound(quiet_profile), f"profile {quiet_profile.name}" if quiet_profile else ""),
    ]
    found = next(((value, source) for value, source in keys if value), None)
    chosen_key, key_from = found or local_master_key(directory)
    in_use = next((p.name for p in (flag_profile, quiet_profile) if p and f"profile {p.name}" in (url_from, key_from)),
                  None)
    return Connection(chosen_url, chosen_key, url_from, key_from, in_use, warnings)

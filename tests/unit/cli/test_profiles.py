"""Where commands go: flags, `--profile`, DUALWRITE_URL/KEY, DUALWRITE_PROFILE or the default profile, the local
stack; the profile file (TOML, 0600) and `dualwrite profile add|list|remove|default`."""

from __future__ import annotations

import io
import json
import os
import stat
import sys
import tomllib

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.cli import config
from core.cli.api import Seams
from core.cli.config import Connection, Profile, ProfileError, Profiles
from core.cli.main import main

PROD = "https://dw-prod.example"
TEST = "https://dw-test.example"


@pytest.fixture
def profile_file(tmp_path, monkeypatch):
    path = tmp_path / "config" / "profiles.toml"
    monkeypatch.setenv("DUALWRITE_CONFIG", str(path))
    return path


def write_profiles(path, default=None, **profiles: tuple[str, str | None]) -> None:
    config.save_profiles(Profiles(path, default, {name: Profile(name, url, key)
                                                  for name, (url, key) in profiles.items()}))


@pytest.fixture
def two(profile_file):
    write_profiles(profile_file, prod=(PROD, "prod-key-0123456789"), test=(TEST, "test-key-0123456789"))
    return profile_file


# --- resolution: for the URL and for the key, the first that gives one wins ------------------------------


def test_nothing_set_is_the_local_stack_as_make_run_starts_it():
    assert config.resolve() == Connection("http://127.0.0.1:7071", "local-master-key", "the local stack",
                                          "the local stack's default")


def test_the_local_key_the_host_takes_environment_then_local_settings_then_the_sample(tmp_path, monkeypatch):
    (tmp_path / "local.settings.sample.json").write_text(json.dumps({"Values": {"DEVHOST_MASTER_KEY": "sample"}}))
    assert config.resolve().key == "sample"
    (tmp_path / "local.settings.json").write_text(json.dumps({"Values": {"DEVHOST_MASTER_KEY": "local"}}))
    assert (config.resolve().key, config.resolve().key_from) == ("local", "DEVHOST_MASTER_KEY of local.settings.json")
    monkeypatch.setenv("DEVHOST_MASTER_KEY", "exported")  # the host lets the environment win: so does the CLI
    assert (config.resolve().key, config.resolve().key_from) == ("exported", "DEVHOST_MASTER_KEY")


def test_the_environment_beats_the_local_stack(monkeypatch):
    monkeypatch.setenv("DUALWRITE_URL", "https://env.example/")
    monkeypatch.setenv("DUALWRITE_KEY", "env-key")
    assert config.resolve() == Connection("https://env.example", "env-key", "DUALWRITE_URL", "DUALWRITE_KEY")


def test_flags_beat_everything(two, monkeypatch):
    monkeypatch.setenv("DUALWRITE_URL", "https://env.example")
    monkeypatch.setenv("DUALWRITE_KEY", "env-key")
    monkeypatch.setenv("DUALWRITE_PROFILE", "test")
    found = config.resolve("https://flag.example/", "flag-key", "prod")
    assert (found.url, found.key, found.url_from, found.key_from) == (
        "https://flag.example", "flag-key", "--url", "--key")


def test_the_default_profile_beats_the_local_stack_and_loses_to_the_environment(profile_file, monkeypatch):
    write_profiles(profile_file, default="prod", prod=(PROD, "prod-key-0123456789"))
    assert config.resolve() == Connection(PROD, "prod-key-0123456789", "profile prod", "profile prod", "prod")
    monkeypatch.setenv("DUALWRITE_URL", "https://env.example")
    monkeypatch.setenv("DUALWRITE_KEY", "env-key")
    assert config.resolve() == Connection("https://env.example", "env-key", "DUALWRITE_URL", "DUALWRITE_KEY")


def test_dualwrite_profile_beats_the_default(two, monkeypatch):
    write_profiles(two, default="prod", prod=(PROD, "prod-key-0123456789"), test=(TEST, "test-key-0123456789"))
    monkeypatch.setenv("DUALWRITE_PROFILE", "test")
    assert (config.resolve().url, config.resolve().key, config.resolve().profile) == (
        TEST, "test-key-0123456789", "test")


def test_the_profile_flag_beats_the_environment(two, monkeypatch):
    monkeypatch.setenv("DUALWRITE_URL", "https://env.example")
    monkeypatch.setenv("DUALWRITE_KEY", "env-key")
    monkeypatch.setenv("DUALWRITE_PROFILE", "test")
    assert config.resolve(profile="prod") == Connection(PROD, "prod-key-0123456789", "profile prod", "profile prod",
                                                        "prod")


def test_with_the_profile_flag_dualwrite_profile_is_not_asked(two, monkeypatch):
    monkeypatch.setenv("DUALWRITE_PROFILE", "gone")  # stale: names no profile
    assert config.resolve(profile="test").url == TEST


def test_url_and_key_resolve_each_on_their_own(two, monkeypatch):
    monkeypatch.setenv("DUALWRITE_KEY", "env-key")
    assert config.resolve(key="flag-key", profile="prod") == Connection(PROD, "flag-key", "profile prod", "--key",
                                                                        "prod")
    write_profiles(two, default="nokey", nokey=(PROD, None))  # a profile without a key: the next source's
    assert (config.resolve().url, config.resolve().key, config.resolve().key_from) == (PROD, "env-key",
                                                                                      "DUALWRITE_KEY")


def test_a_profile_key_goes_only_to_that_profile_url(two, monkeypatch):
    # --url elsewhere: prod's key stays home; the key comes from the next source (here the local stack's)
    found = config.resolve(url="https://elsewhere.example", profile="prod")
    assert (found.url, found.key, found.key_from) == ("https://elsewhere.example", "local-master-key",
                                                      "the local stack's default")
    write_profiles(two, default="prod", prod=(PROD, "prod-key-0123456789"))
    monkeypatch.setenv("DUALWRITE_URL", "https://env.example")
    assert config.resolve().key == "local-master-key"
    # the same URL written otherwise (trailing slash, case of the host) is the profile's own
    assert config.resolve(url="https://DW-PROD.example/").key == "prod-key-0123456789"


def test_an_unknown_profile_is_a_usage_error_naming_the_known_ones(two, monkeypatch):
    with pytest.raises(ProfileError, match=r"no profile 'nope' \(--profile\) in .*profiles: prod, test") as raised:
        config.resolve(profile="nope")
    assert raised.value.exit_code == 2
    monkeypatch.setenv("DUALWRITE_PROFILE", "gone")
    with pytest.raises(ProfileError, match="no profile 'gone' \\(DUALWRITE_PROFILE\\)"):
        config.resolve("https://flag.example", "flag-key")  # named, so checked even when not needed


def test_the_file_is_not_read_when_flags_or_the_environment_give_both(profile_file, monkeypatch):
    profile_file.parent.mkdir(parents=True)
    profile_file.write_text("this is [not toml")
    assert config.resolve("https://a.example", "k").url == "https://a.example"
    monkeypatch.setenv("DUALWRITE_URL", "https://env.example")
    monkeypatch.setenv("DUALWRITE_KEY", "env-key")
    assert config.resolve().key == "env-key"
    monkeypatch.delenv("DUALWRITE_KEY")
    with pytest.raises(ProfileError, match="is not valid TOML") as raised:
        config.resolve()
    assert raised.value.exit_code == 1


@pytest.mark.parametrize(("text", "message"), [
    ("default = 3\n", "default must be a profile name"),
    ('profiles = "x"\n', "profiles must be a table"),
    ("[profiles.a]\nkey = \"k\"\n", "profile 'a' has no url"),
    ("[profiles.a]\nurl = \"https://a\"\nkey = 5\n", "key must be a string"),
    ('default = "b"\n[profiles.a]\nurl = "https://a"\n', "no profile 'b' \\(the default of"),
])
def test_a_malformed_file_says_what_is_wrong(profile_file, text, message):
    profile_file.parent.mkdir(parents=True)
    profile_file.write_text(text)
    with pytest.raises(ProfileError, match=message):
        config.resolve()


def test_the_file_path_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.delenv("DUALWRITE_CONFIG")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config.config_path() == tmp_path / "xdg" / "dualwrite" / "profiles.toml"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert config.config_path() == tmp_path / "home" / ".config" / "dualwrite" / "profiles.toml"


# --- the file ------------------------------------------------------------------------------------------


@pytest.mark.skipif(os.name != "posix", reason="file modes")
def test_the_file_is_written_0600_in_a_0700_folder_and_replaced_whole(profile_file):
    write_profiles(profile_file, prod=(PROD, "k1"))
    assert stat.S_IMODE(profile_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(profile_file.parent.stat().st_mode) == 0o700
    os.chmod(profile_file, 0o644)
    write_profiles(profile_file, prod=(PROD, "k2"))
    assert stat.S_IMODE(profile_file.stat().st_mode) == 0o600
    assert list(profile_file.parent.iterdir()) == [profile_file]  # no temporary file left


@pytest.mark.skipif(os.name != "posix", reason="file modes")
def test_a_file_others_can_read_is_warned_about(profile_file):
    write_profiles(profile_file, prod=(PROD, "k1"))
    os.chmod(profile_file, 0o644)
    assert config.load_profiles().warnings == [
        f"the profile file {profile_file} holds keys and others can read it (mode 0644): chmod 600 {profile_file}"]


@settings(deadline=None, max_examples=60)  # each example writes a file (and syncs it to disk)
@given(url=st.text(min_size=1), key=st.text(min_size=1), default=st.sampled_from([None, "p-1"]))
def test_what_is_written_reads_back_the_same(tmp_path_factory, url, key, default):
    path = tmp_path_factory.mktemp("profiles") / "profiles.toml"
    written = Profiles(path, default, {"p-1": Profile("p-1", url, key), "other_2": Profile("other_2", "https://x")})
    config.save_profiles(written)
    document = tomllib.loads(path.read_text(encoding="utf-8"))
    assert document.get("default") == default
    assert document["profiles"]["p-1"] == {"url": url, "key": key}
    assert document["profiles"]["other_2"] == {"url": "https://x"}


@pytest.mark.parametrize(("key", "shown"), [
    ("local-master-key", "loca… (16 characters)"),
    ("abcdef", "ab… (6 characters)"),
    ("ab", "… (2 characters)"),
    (None, ""),
])
def test_a_key_is_shown_masked(key, shown):
    assert config.mask(key) == shown


# --- commands use it --------------------------------------------------------------------------------------


def _recording() -> tuple[Seams, list[httpx.Request]]:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json={"errors": [], "maps": [], "runs": []})

    return Seams(transport=httpx.MockTransport(handler)), requests


@pytest.mark.parametrize("argv", [
    ["maps", "status"], ["sync", "runs"], ["errors", "list"], ["activity", "list"], ["health"], ["deploy"],
])
def test_every_client_command_takes_profile(two, argv):
    seams, requests = _recording()
    assert main([*argv, "--profile", "test"], obj=seams) in (0, 1)  # health of an empty answer is not healthy
    assert str(requests[0].url).startswith(TEST + "/api/")
    assert requests[0].headers["x-functions-key"] == "test-key-0123456789"


def test_an_unknown_profile_exits_2_before_any_request(two, capsys):
    seams, requests = _recording()
    assert main(["maps", "status", "--profile", "nope"], obj=seams) == 2
    assert requests == []
    assert "no profile 'nope' (--profile)" in capsys.readouterr().err


def test_a_refused_key_says_where_it_came_from(two, capsys):
    seams = Seams(transport=httpx.MockTransport(lambda request: httpx.Response(401)))
    assert main(["sync", "runs", "--profile", "prod"], obj=seams) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "HTTP 401 Unauthorized" in err and "the key sent came from profile prod" in err
    assert "prod-key" not in err


# --- dualwrite profile ... ------------------------------------------------------------------------------


def test_add_list_default_remove(profile_file, capsys):
    assert main(["profile", "add", "prod", "--url", PROD + "/", "--key", "prod-key-0123456789"]) == 0
    out = capsys.readouterr().out
    assert f"added profile prod: {PROD}, key prod… (19 characters)" in out and "--profile prod" in out
    assert config.load_profiles().profiles == {"prod": Profile("prod", PROD, "prod-key-0123456789")}
    assert main(["profile", "add", "test", "--url", TEST, "--key", "test-key-0123456789", "--default"]) == 0
    assert "(the default)" in capsys.readouterr().out

    assert main(["profile", "list"]) == 0
    out = capsys.readouterr().out
    assert "prod-key-0123456789" not in out and "test-key-0123456789" not in out
    lines = {line.split()[0]: line.split() for line in out.splitlines()[1:3]}
    assert lines["prod"][:2] == ["prod", PROD] and lines["test"][-1] == "default"
    assert f"without flags, commands go to {TEST} (from profile test) with the key test… (19 characters) " \
           "(from profile test)" in " ".join(out.split())

    assert main(["profile", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["default"] == "test" and listed["path"] == str(profile_file)
    assert listed["profiles"] == [{"name": "prod", "url": PROD, "key": "prod… (19 characters)"},
                                  {"name": "test", "url": TEST, "key": "test… (19 characters)"}]
    assert listed["in_use"]["url"] == TEST and listed["in_use"]["profile"] == "test"

    assert main(["profile", "default"]) == 0
    assert capsys.readouterr().out.strip() == "test"
    assert main(["profile", "default", "prod"]) == 0
    assert config.load_profiles().default == "prod"
    assert main(["profile", "remove", "prod"]) == 0
    assert "there is no default profile now" in capsys.readouterr().out
    assert config.load_profiles().default is None and list(config.load_profiles().profiles) == ["test"]
    assert main(["profile", "default", "--none"]) == 0


def test_add_replaces_a_profile_of_the_same_name(profile_file, capsys):
    assert main(["profile", "add", "prod", "--url", PROD, "--key", "one-key-0123"]) == 0
    assert main(["profile", "add", "prod", "--url", TEST, "--key", "two-key-0123"]) == 0
    assert "replaced profile prod" in capsys.readouterr().out
    assert config.load_profiles().profiles["prod"] == Profile("prod", TEST, "two-key-0123")


def test_add_reads_the_key_from_stdin_when_it_is_no_terminal(profile_file, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("piped-key-0123456789\n"))
    assert main(["profile", "add", "prod", "--url", PROD]) == 0
    assert config.load_profiles().profiles["prod"].key == "piped-key-0123456789"
    assert "piped-key-0123456789" not in capsys.readouterr().out


def test_add_asks_for_the_key_without_echo_on_a_terminal(profile_file, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    asked: list[str] = []
    monkeypatch.setattr(sys, "stdin", Terminal())
    monkeypatch.setattr("getpass.getpass", lambda prompt: asked.append(prompt) or "typed-key-0123")
    assert main(["profile", "add", "prod", "--url", PROD]) == 0
    assert asked == ["key for profile prod (not shown; empty: none): "]
    assert config.load_profiles().profiles["prod"].key == "typed-key-0123"


@pytest.mark.parametrize(("argv", "message"), [
    (["profile", "add", "no spaces", "--url", PROD, "--key", "k"], "use letters, digits"),
    (["profile", "add", "prod", "--url", "ftp://x", "--key", "k"], "not an http(s) URL"),
    (["profile", "default", "nope"], "no profile 'nope'"),
])
def test_refused_names_and_urls_exit_2(profile_file, capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not profile_file.exists()


def test_removing_an_unknown_profile_exits_1(profile_file, capsys):
    assert main(["profile", "remove", "nope"]) == 1
    assert "no profile 'nope'" in capsys.readouterr().err


def test_list_without_a_file_says_how_to_add_one(capsys):
    assert main(["profile", "list"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "no profiles in" in out and "dualwrite profile add NAME --url URL" in out
    assert "commands go to http://127.0.0.1:7071 (from the local stack)" in out

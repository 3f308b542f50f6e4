from __future__ import annotations

from pathlib import Path

import pytest

from livecast.settings import ConfigError, Secret, build


def test_defaults_match_operations_contract(tmp_path: Path) -> None:
    s = build({}, dev_key_file=tmp_path / "k")
    assert (s.host, s.port, s.sdkappid) == ("127.0.0.1", 8080, 1400000000)
    assert s.admins == ("administrator",)
    assert (s.room_rate, s.room_burst, s.tick_ms, s.allow_guests) == (40, 40, 100, True)
    assert s.callback_timeout == 2.0 and s.redis_url == "" and s.callback_url == ""
    assert s.dev_key and len(s.secret_key.value) == 64


def test_dev_key_is_kept_across_builds(tmp_path: Path) -> None:
    first = build({}, dev_key_file=tmp_path / "k").secret_key.value
    assert build({}, dev_key_file=tmp_path / "k").secret_key.value == first
    assert (tmp_path / "k").stat().st_mode & 0o077 == 0


def test_env_values_are_parsed(tmp_path: Path) -> None:
    s = build({"LIVECAST_PORT": "9000", "LIVECAST_SECRET_KEY": "k1", "LIVECAST_ADMINS": "a, b",
               "LIVECAST_ALLOW_GUESTS": "0", "LIVECAST_MAX_WAIT_MS": "4000,3000,2000,1000",
               "LIVECAST_OUTBOX_SOFT_KB": "64"}, dev_key_file=tmp_path / "k")
    assert s.port == 9000 and s.admins == ("a", "b") and not s.allow_guests
    assert s.max_wait == (4.0, 3.0, 2.0, 1.0) and s.outbox_soft_bytes == 64 * 1024
    assert not s.dev_key and s.secret_key.value == "k1"
    assert not (tmp_path / "k").exists()


def test_secret_never_shows_in_repr() -> None:
    s = build({"LIVECAST_SECRET_KEY": "super-secret", "LIVECAST_CALLBACK_TOKEN": "zq-token-value"})
    assert "super-secret" not in repr(s) and "zq-token-value" not in repr(s)
    assert str(Secret("x")) == "***"


@pytest.mark.parametrize(("name", "value"), [
    ("LIVECAST_PORT", "eighty"), ("LIVECAST_PORT", "70000"), ("LIVECAST_ROOM_RATE", "-1"),
    ("LIVECAST_ALLOW_GUESTS", "maybe"), ("LIVECAST_LOG_LEVEL", "loud"),
    ("LIVECAST_REDIS_URL", "http://x"), ("LIVECAST_CALLBACK_URL", "ftp://x"),
    ("LIVECAST_ADMINS", " , "), ("LIVECAST_MAX_WAIT_MS", "1,2"), ("LIVECAST_TICK_MS", "0"),
])
def test_bad_values_name_the_variable(name: str, value: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=name):
        build({name: value}, dev_key_file=tmp_path / "k")


def test_soft_limit_must_be_below_hard(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SOFT"):
        build({"LIVECAST_OUTBOX_SOFT_KB": "4096", "LIVECAST_OUTBOX_HARD_KB": "1024"},
              dev_key_file=tmp_path / "k")


def test_allowed_origins_are_parsed_and_checked(tmp_path: Path) -> None:
    assert build({}, dev_key_file=tmp_path / "k").allowed_origins == ()
    s = build({"LIVECAST_ALLOWED_ORIGINS": "https://App.example.com, http://localhost:5173"},
              dev_key_file=tmp_path / "k")
    assert s.allowed_origins == ("https://app.example.com", "http://localhost:5173")
    with pytest.raises(ConfigError, match="LIVECAST_ALLOWED_ORIGINS"):
        build({"LIVECAST_ALLOWED_ORIGINS": "https://app.example.com/page"},
              dev_key_file=tmp_path / "k")


def test_a_dev_key_file_behind_a_link_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere"
    real.write_text("k" * 64)
    link = tmp_path / "dev-key"
    link.symlink_to(real)
    with pytest.raises(ConfigError, match="symbolic link"):
        build({}, dev_key_file=link)


def test_a_world_readable_dev_key_file_is_warned_about(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "dev-key"
    path.write_text("k" * 64)
    path.chmod(0o644)
    with caplog.at_level("WARNING", logger="livecast"):
        s = build({}, dev_key_file=path)
    assert s.secret_key.value == "k" * 64
    assert "readable by other users" in caplog.text


def test_every_variable_is_in_the_readme_configuration_table() -> None:
    from livecast.settings import ENV

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    assert [name for name, _field, _parse in ENV if f"`{name}`" not in table] == []


def test_ops_token_and_listen_are_parsed_and_checked(tmp_path: Path) -> None:
    key = {"LIVECAST_SECRET_KEY": "k" * 32}
    s = build({**key, "LIVECAST_OPS_TOKEN": " ops-token-0123456789 ",
               "LIVECAST_OPS_LISTEN": "127.0.0.1:9100"})
    assert s.ops_token.value == "ops-token-0123456789" and s.ops_listen == ("127.0.0.1", 9100)
    assert "ops-token-0123456789" not in repr(s)
    assert build({**key, "LIVECAST_OPS_LISTEN": "[::1]:9100"}).ops_listen == ("::1", 9100)
    unset = build({**key, "LIVECAST_OPS_TOKEN": "", "LIVECAST_OPS_LISTEN": ""})
    assert unset.ops_token.value == "" and unset.ops_listen is None
    for bad in ("short", "has space in it 0123456789", "t\u00e9l\u00e9phone-0123456789"):
        with pytest.raises(ConfigError, match="LIVECAST_OPS_TOKEN"):
            build({**key, "LIVECAST_OPS_TOKEN": bad})
    for bad in ("9100", ":9100", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:70000", "h:\u00b2"):
        with pytest.raises(ConfigError, match="LIVECAST_OPS_LISTEN"):
            build({**key, "LIVECAST_OPS_LISTEN": bad})
    with pytest.raises(ConfigError, match="LIVECAST_OPS_LISTEN must differ"):
        build({**key, "LIVECAST_OPS_LISTEN": "127.0.0.1:8080"})

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from livecast.settings import ConfigError, Secret, build


def test_defaults_match_operations_contract(tmp_path: Path) -> None:
    s = build({}, dev_key_file=tmp_path / "k")
    assert (s.host, s.port, s.sdkappid) == ("127.0.0.1", 8080, 1400000000)
    assert s.admins == ("administrator",)
    assert (s.room_rate, s.room_burst, s.tick_ms, s.allow_guests) == (40, 40, 100, True)
    assert s.callback_timeout == 2.0 and s.redis_url == "" and s.callback_url == ""
    assert s.dev_key and len(s.secret_key.value) == 64
    assert (s.history_size, s.history_ttl) == (100, 24 * 3600)  # "100 / 24h"


@pytest.mark.parametrize(("value", "seconds"), [
    ("24h", 86400.0), ("86400", 86400.0), ("90m", 5400.0), ("1.5h", 5400.0), ("2d", 172800.0),
    ("30s", 30.0), (" 24H ", 86400.0), ("1", 1.0)])
def test_the_history_ttl_takes_seconds_or_a_unit(value: str, seconds: float,
                                                 tmp_path: Path) -> None:
    assert build({"LIVECAST_HISTORY_TTL": value},
                 dev_key_file=tmp_path / "k").history_ttl == seconds


@pytest.mark.parametrize("value", ["24x", "h", "", "24 h h", "0.5s", "31d", "-1h", "1w"])
def test_a_history_ttl_of_no_known_unit_or_out_of_range_names_the_variable(
        value: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="LIVECAST_HISTORY_TTL"):
        build({"LIVECAST_HISTORY_TTL": value}, dev_key_file=tmp_path / "k")


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


def test_each_worker_gets_an_ops_port_of_its_own(tmp_path: Path) -> None:
    key = {"LIVECAST_SECRET_KEY": "k" * 32, "LIVECAST_OPS_LISTEN": "127.0.0.1:9100"}
    assert build(key).ops_address == ("127.0.0.1", 9100)
    workers = {**key, "LIVECAST_WORKERS": "1"}  # what --workers gives each worker
    assert [build({**workers, "LIVECAST_WORKER": str(i)}).ops_address
            for i in (1, 2, 3)] == [("127.0.0.1", 9100), ("127.0.0.1", 9101), ("127.0.0.1", 9102)]
    assert build({"LIVECAST_SECRET_KEY": "k" * 32}).ops_address is None
    with pytest.raises(ConfigError, match="LIVECAST_OPS_LISTEN: with 3 workers"):
        build({**key, "LIVECAST_OPS_LISTEN": "127.0.0.1:65534", "LIVECAST_WORKERS": "3"})
    with pytest.raises(ConfigError, match="ops ports are 8079 to 8081"):  # the main port among them
        build({**key, "LIVECAST_OPS_LISTEN": "127.0.0.1:8079", "LIVECAST_WORKERS": "3"})
    assert build({**key, "LIVECAST_OPS_LISTEN": "127.0.0.1:8077",
                  "LIVECAST_WORKERS": "3"}).ops_listen == ("127.0.0.1", 8077)


@pytest.mark.parametrize("url", [
    "redis://127.0.0.1:abc", "redis://127.0.0.1:99999", "redis://127.0.0.1:0", "redis://:6379",
    "redis://", "redis://h:", "redis://h:6379/abc", "rediss://[::1]:x",
    "redis+cluster://a:1,b:99999", "redis+cluster://u:p@a:1,b:x", "redis+cluster://a:1,",
    "redis://a:1,b:abc", "rediss+cluster://", "unix://", "redis:/h:1", "REDIS://h:1",
    "tcp://h:6379",
])
def test_a_malformed_redis_url_names_the_variable(url: str, tmp_path: Path) -> None:
    """Refused when the settings are built, not later in the banner or the store."""
    with pytest.raises(ConfigError, match="LIVECAST_REDIS_URL"):
        build({"LIVECAST_REDIS_URL": url}, dev_key_file=tmp_path / "k")


@pytest.mark.parametrize("url", [
    "redis://127.0.0.1:6379", "redis://h", "redis://u:p%40ss@h:6379/2", "rediss://[::1]:6380/",
    "redis+cluster://a:1,b:2,c:65535", "rediss+cluster://u:p@a:7000", "redis://a:1,b:2",
    "unix:///var/run/redis.sock", "",
])
def test_a_well_formed_redis_url_is_kept_as_given(url: str, tmp_path: Path) -> None:
    assert build({"LIVECAST_REDIS_URL": url}, dev_key_file=tmp_path / "k").redis_url == url


@pytest.mark.parametrize("url", ["http://", "https://", "http://:8090/cb", "http://h:0/",
                                 "http://h:99999/", "http://h:x/", "ftp://h/", "h:8090/cb",
                                 "HTTP://h/"])
def test_a_callback_url_without_a_host_or_of_another_scheme_is_refused(
        url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="LIVECAST_CALLBACK_URL"):
        build({"LIVECAST_CALLBACK_URL": url}, dev_key_file=tmp_path / "k")
    ok = "https://user:pw@backend.example:8443/livecast?x=1"
    assert build({"LIVECAST_CALLBACK_URL": ok}, dev_key_file=tmp_path / "k").callback_url == ok


def test_port_0_is_refused(tmp_path: Path) -> None:
    """The banner (and ``--workers``, whose workers would each get a port of
    their own) need the port the server really listens on."""
    with pytest.raises(ConfigError, match="LIVECAST_PORT"):
        build({"LIVECAST_PORT": "0"}, dev_key_file=tmp_path / "k")


def test_a_dev_key_file_that_is_a_directory_names_the_variable_and_path(
        tmp_path: Path) -> None:
    where = tmp_path / "a-directory"
    where.mkdir()
    with pytest.raises(ConfigError, match="LIVECAST_DEV_KEY_FILE") as caught:
        build({}, dev_key_file=where)
    assert str(where) in str(caught.value)


def test_a_dev_key_file_whose_directory_cannot_be_made_names_the_variable_and_path(
        tmp_path: Path) -> None:
    """Its directory a dangling link: nothing to read, and mkdir fails (as root too)."""
    parent = tmp_path / "gone"
    parent.symlink_to(tmp_path / "missing" / "deeper")
    where = parent / "dev-key"
    with pytest.raises(ConfigError, match="LIVECAST_DEV_KEY_FILE") as caught:
        build({"LIVECAST_DEV_KEY_FILE": str(where)})
    assert str(where) in str(caught.value)


def test_a_dev_key_file_that_is_not_text_names_the_variable(tmp_path: Path) -> None:
    where = tmp_path / "dev-key"
    where.write_bytes(b"\xff\xfe\x00garbage")
    where.chmod(0o600)
    with pytest.raises(ConfigError, match="LIVECAST_DEV_KEY_FILE"):
        build({}, dev_key_file=where)


def _float_variables() -> list[str]:
    """Every variable whose setting is a float or a tuple of floats."""
    from livecast.settings import ENV, Settings

    kinds = {f.name: str(f.type) for f in fields(Settings)}
    return [name for name, fld, _ in ENV
            if kinds[fld] == "float" or kinds[fld].startswith("tuple[float")]


NON_FINITE = st.sampled_from(["nan", "NaN", "-nan", "+nan", "inf", "-inf", "+inf", "Infinity",
                              "-Infinity", "INF", "1e999", "-1e999"])


def test_the_float_variables_are_found() -> None:
    names = _float_variables()
    assert "LIVECAST_MAX_WAIT_MS" in names and "LIVECAST_CALLBACK_TIMEOUT" in names
    assert len(names) >= 15


@given(name=st.sampled_from(_float_variables()), bad=NON_FINITE,
       at=st.integers(min_value=0, max_value=3))
def test_no_float_setting_takes_nan_or_inf(name: str, bad: str, at: int) -> None:
    """nan compares False with every bound, so a range check alone lets it
    through (and start-up failed later, deep in the scheduler)."""
    value = bad
    if name == "LIVECAST_MAX_WAIT_MS":  # four values: the bad one anywhere among them
        parts = ["1000"] * 4
        parts[at] = bad
        value = ",".join(parts)
    with pytest.raises(ConfigError, match=name):
        build({name: value, "LIVECAST_SECRET_KEY": "k"})

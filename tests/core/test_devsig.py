"""Who may ask /dev/usersig (livecast/core/devsig.py)."""

from __future__ import annotations

import pytest

from livecast.core.devsig import dev_sig_refusal, looks_like_admin

ADMINS = ("administrator",)


@pytest.mark.parametrize("host", ["127.0.0.1:8080", "localhost:8080", "localhost",
                                  "[::1]:8080", "127.1.2.3"])
def test_loopback_hosts_same_origin_and_no_origin_are_served(host: str) -> None:
    assert dev_sig_refusal("alice", ADMINS, host, None, ()) is None
    assert dev_sig_refusal("alice", ADMINS, host, f"http://{host}", ()) is None


@pytest.mark.parametrize("host", ["evil.example:8080", "example.com", "10.0.0.5:8080", ""])
def test_a_rebinding_host_is_refused(host: str) -> None:
    refusal = dev_sig_refusal("alice", ADMINS, host, None, ())
    assert refusal is not None and "loopback" in refusal


def test_other_origins_need_to_be_listed_by_name() -> None:
    host = "127.0.0.1:8080"
    assert dev_sig_refusal("alice", ADMINS, host, "https://evil.example", ()) is not None
    assert dev_sig_refusal("alice", ADMINS, host, "https://app.test", ("https://app.test",)) \
        is None
    assert dev_sig_refusal("alice", ADMINS, host, "https://evil.example", ("*",)) is not None


@pytest.mark.parametrize("user", ["administrator", "Administrator", "administrator ",
                                  " ADMINISTRATOR", "admin istrator"])
def test_admins_and_look_alikes_are_refused(user: str) -> None:
    assert looks_like_admin(user, ADMINS)
    refusal = dev_sig_refusal(user, ADMINS, "127.0.0.1", None, ())
    assert refusal is not None and "admin" in refusal


def test_other_ids_are_not_look_alikes() -> None:
    assert not looks_like_admin("administrators", ADMINS)
    assert not looks_like_admin("alice", ADMINS)

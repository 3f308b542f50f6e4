"""Admission control's pure parts: per-IP and global buckets, the bounded
per-IP table, retry hints and the failed-authentication lockout."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from livecast.core.admission import Lockout, RateGate, client_key, retry_hint


def test_per_ip_burst_then_refused_with_the_wait_for_one_token() -> None:
    gate = RateGate(rate=2, burst=3, global_rate=0, global_burst=1, max_ips=10, now=0)
    assert [gate.admit("1.2.3.4", 0) for _ in range(3)] == [None, None, None]
    assert gate.admit("1.2.3.4", 0) == ("ip", 0.5)
    assert gate.admit("5.6.7.8", 0) is None        # another IP has its own bucket
    assert gate.admit("1.2.3.4", 0.5) is None      # one token back after 1/rate s


def test_global_bucket_refuses_every_ip_and_exempt_ips_still_count() -> None:
    gate = RateGate(rate=100, burst=100, global_rate=1, global_burst=2, max_ips=10, now=0)
    assert gate.admit(None, 0) is None
    assert gate.admit("1.1.1.1", 0) is None
    refused = gate.admit("2.2.2.2", 0)
    assert refused is not None and refused[0] == "global" and refused[1] > 0
    assert gate.admit(None, 0) is not None


def test_a_refusal_takes_no_token() -> None:
    gate = RateGate(rate=1, burst=1, global_rate=1, global_burst=5, max_ips=10, now=0)
    assert gate.admit("a", 0) is None
    for _ in range(10):
        assert gate.admit("a", 0) is not None      # refused per IP: global untouched
    assert [gate.admit(ip, 0) for ip in "bcde"] == [None] * 4


def test_zero_rate_disables_a_bucket() -> None:
    gate = RateGate(rate=0, burst=1, global_rate=0, global_burst=1, max_ips=1, now=0)
    assert all(gate.admit("a", 0) is None for _ in range(1000))
    assert len(gate) == 0


@given(st.lists(st.integers(0, 50), max_size=300), st.integers(1, 20))
def test_per_ip_table_never_holds_more_than_max_ips(ips: list[int], cap: int) -> None:
    gate = RateGate(rate=1, burst=1, global_rate=0, global_burst=1, max_ips=cap, now=0)
    for ip in ips:
        gate.admit(str(ip), 0)
        assert len(gate) <= cap


def test_least_recently_seen_ip_is_evicted_first() -> None:
    gate = RateGate(rate=1, burst=1, global_rate=0, global_burst=1, max_ips=2, now=0)
    gate.admit("a", 0)
    gate.admit("b", 0)
    assert gate.admit("a", 0) is not None   # a is refused, and now most recent
    gate.admit("c", 0)                      # evicts b
    assert gate.admit("a", 0) is not None   # a kept its empty bucket
    assert gate.admit("b", 0) is None       # b comes back with a fresh one


def test_retry_hint_is_whole_seconds_at_least_one() -> None:
    assert [retry_hint(x) for x in (0, 0.01, 1, 1.2, 59.5)] == [1, 1, 1, 2, 60]


def test_lockout_after_limit_failures_within_window() -> None:
    lock = Lockout(limit=3, window=10, lock_for=60, max_ips=10)
    assert [lock.failed("ip", t) for t in (0, 1)] == [0, 0]
    assert lock.locked("ip", 2) == 0
    assert lock.failed("ip", 2) == 60
    assert lock.locked("ip", 2) == 60 and lock.locked("ip", 61.5) == 0.5
    assert lock.locked("ip", 62) == 0
    assert lock.locked("other", 2) == 0


def test_failures_outside_the_window_start_a_new_count() -> None:
    lock = Lockout(limit=3, window=10, lock_for=60, max_ips=10)
    assert [lock.failed("ip", t) for t in (0, 1, 11, 12)] == [0, 0, 0, 0]
    assert lock.failed("ip", 13) == 60


def test_success_clears_failures_and_zero_limit_disables() -> None:
    lock = Lockout(limit=2, window=10, lock_for=5, max_ips=10)
    lock.failed("ip", 0)
    lock.succeeded("ip")
    assert lock.failed("ip", 1) == 0
    off = Lockout(limit=0, window=10, lock_for=5, max_ips=10)
    assert all(off.failed("ip", 0) == 0 for _ in range(100))


def test_lockout_table_is_bounded() -> None:
    lock = Lockout(limit=5, window=10, lock_for=5, max_ips=3)
    for i in range(100):
        lock.failed(str(i), 0)
        assert len(lock) <= 3


# ------------------------------------------------------------------ what "per IP" keys
V6 = st.ip_addresses(v=6).filter(lambda a: a.ipv4_mapped is None)


@given(V6, st.integers(0, 2**64 - 1))
def test_every_address_of_an_ipv6_slash_64_has_the_prefix_as_its_key(
        addr: ipaddress.IPv6Address, host: int) -> None:
    other = ipaddress.IPv6Address(int(addr) >> 64 << 64 | host)
    assume(other.ipv4_mapped is None)  # ::ffff:0:0/96 lies in ::/64, and is IPv4
    assert client_key(str(addr)) == client_key(str(other)) == str(
        ipaddress.IPv6Network((addr, 64), strict=False))
    assert client_key(addr.exploded) == client_key(str(addr))  # however it is written


@given(V6, V6)
def test_ipv6_addresses_of_different_slash_64s_have_different_keys(
        a: ipaddress.IPv6Address, b: ipaddress.IPv6Address) -> None:
    assert (client_key(str(a)) == client_key(str(b))) == (int(a) >> 64 == int(b) >> 64)


@given(st.ip_addresses(v=4), st.ip_addresses(v=4))
def test_an_ipv4_address_is_its_own_key_and_its_mapped_form_too(
        a: ipaddress.IPv4Address, b: ipaddress.IPv4Address) -> None:
    assert client_key(str(a)) == client_key(f"::ffff:{a}") == str(a)
    assert (client_key(str(a)) == client_key(str(b))) == (a == b)


@pytest.mark.parametrize(("peer", "key", "exempt"), [
    ("2001:db8:1:2::1", "2001:db8:1:2::/64", "2001:db8:1:2::/64"),
    ("2001:DB8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64", "2001:db8:1:2::/64"),
    ("fe80::1%eth0", "fe80::/64", "fe80::/64"),
    ("::ffff:203.0.113.9", "203.0.113.9", "203.0.113.9"),
    ("203.0.113.9", "203.0.113.9", "203.0.113.9"),
    ("127.0.0.1", "127.0.0.1", None),
    ("::ffff:127.0.0.1", "127.0.0.1", None),
    ("::1", "::/64", None),
    ("not an address", "not an address", "not an address"),
    ("", "", ""),
])
def test_client_key_examples(peer: str, key: str, exempt: str | None) -> None:
    assert client_key(peer) == key
    assert client_key(peer, exempt_loopback=True) == exempt


@given(st.text())
def test_client_key_never_raises(peer: str) -> None:
    assert isinstance(client_key(peer), str)


def test_a_slash_64_rotating_its_addresses_shares_one_bucket_and_one_lockout() -> None:
    """The review's case: 1,000 connects from 1,000 addresses of one /64 are
    limited as 1,000 from one address are."""
    gate = RateGate(rate=1, burst=10, global_rate=0, global_burst=1, max_ips=100, now=0)
    admitted = sum(gate.admit(client_key(f"2001:db8:1:2::{i:x}"), 0) is None
                   for i in range(1000))
    assert admitted == 10 and len(gate) == 1
    lockout = Lockout(limit=20, window=60, lock_for=60, max_ips=100)
    for i in range(20):
        lockout.failed(client_key(f"2001:db8:1:2::{i:x}") or "", 0)
    assert lockout.locked(client_key("2001:db8:1:2:dead::beef") or "", 1) == 59
    assert lockout.locked(client_key("2001:db8:1:3::1") or "", 1) == 0

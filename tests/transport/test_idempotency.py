"""Idempotency keys: one job per principal and key, never shared across principals."""

from __future__ import annotations

import pytest

from tests.transport.conftest import serve

pytestmark = pytest.mark.anyio


async def test_same_principal_and_key_return_the_same_job() -> None:
    """Submitting twice with one idempotency key returns the first job and creates no other."""
    async with serve() as srv:
        first = await srv.submit("alice", "fake.gate", {"key": "once"}, idempotency_key="order-1")
        again = await srv.submit("alice", "fake.gate", {"key": "once"}, idempotency_key="order-1")
        srv.gates.open("once")
        await srv.finished(first["id"])
        after = await srv.submit(
            "alice", "fake.gate", {"key": "once"}, idempotency_key="order-1", wait=5
        )
        listing = await srv.get_json("alice", "/v1/jobs")
    assert again["id"] == first["id"]
    assert after["id"] == first["id"]
    assert after["state"] == "succeeded"
    assert first["idempotency_key"] == "order-1"
    assert [j["id"] for j in listing["jobs"]] == [first["id"]]


async def test_another_principal_with_the_same_key_gets_its_own_job() -> None:
    """Bob using alice's idempotency key gets a new job of his own, and alice keeps hers."""
    async with serve() as srv:
        alices = await srv.submit("alice", "builtin.echo", {"text": "a"}, idempotency_key="k-1")
        bobs = await srv.submit("bob", "builtin.echo", {"text": "b"}, idempotency_key="k-1")
        bobs_again = await srv.submit("bob", "builtin.echo", {"text": "b"}, idempotency_key="k-1")
        alices_again = await srv.submit(
            "alice", "builtin.echo", {"text": "a"}, idempotency_key="k-1"
        )
        everything = await srv.get_json("admin", "/v1/jobs")
    assert bobs["id"] != alices["id"]
    assert bobs["owner"] == "bob"
    assert bobs_again["id"] == bobs["id"]
    assert alices_again["id"] == alices["id"]
    assert sorted(j["id"] for j in everything["jobs"]) == sorted([alices["id"], bobs["id"]])


async def test_different_keys_and_no_key_create_new_jobs() -> None:
    """Another key, or no key at all, always creates a new job."""
    async with serve() as srv:
        one = await srv.submit("alice", "builtin.echo", {"text": "x"}, idempotency_key="a")
        two = await srv.submit("alice", "builtin.echo", {"text": "x"}, idempotency_key="b")
        three = await srv.submit("alice", "builtin.echo", {"text": "x"})
        four = await srv.submit("alice", "builtin.echo", {"text": "x"})
    assert len({one["id"], two["id"], three["id"], four["id"]}) == 4
    assert three["idempotency_key"] is None

"""The SDK when the network misbehaves: retries, dedup, backoff, final closes."""

from __future__ import annotations

import asyncio

import pytest

from pigeon.bootstrap import Container
from pigeon.client import (
    AuthenticationError,
    ConnectionClosed,
    DrainedEvent,
    MessageEvent,
    PigeonClient,
    ReceiptEvent,
    ReconnectPolicy,
    SendFailed,
)
from tests.client.conftest import OpenDevice, Register
from tests.client.proxy import Proxy
from tests.support import eventually


async def test_send_is_retried_with_the_same_client_message_id_after_a_drop(
    register: Register, open_device: OpenDevice, proxy: Proxy
) -> None:
    alice = await open_device(await register(), via_proxy=True)
    bob = await open_device(await register())
    chat = await alice.conn.create_chat([bob.user_id])

    proxy.hold("down")  # the answer will not reach Alice
    sending = asyncio.create_task(alice.conn.send_message(chat.chat_id, "exactly once"))
    delivered = await bob.next(MessageEvent)  # so the server has stored it
    proxy.cut()  # the socket dies before the answer arrives
    proxy.release("down")

    sent = await asyncio.wait_for(sending, 15)
    assert sent.duplicate  # the server recognised the clientMessageId of the first attempt
    assert (sent.message_id, sent.seq) == (delivered.message_id, delivered.seq)
    assert alice.conn.reconnects == 1

    await alice.conn.send_message(chat.chat_id, "second")
    assert (await bob.next(MessageEvent)).text == "second"
    assert [(m.text, m.seq) for m in bob.received_messages()] == [
        ("exactly once", 1),
        ("second", 2),
    ]


async def test_send_is_retried_after_a_timeout_on_the_same_socket(
    register: Register, open_device: OpenDevice, proxy: Proxy
) -> None:
    alice = await open_device(await register(), via_proxy=True, request_timeout=1.0)
    bob = await open_device(await register())
    chat = await alice.conn.create_chat([bob.user_id])

    proxy.hold("down")
    sending = asyncio.create_task(alice.conn.send_message(chat.chat_id, "slow link"))
    delivered = await bob.next(MessageEvent)
    # The first attempt times out unanswered (1 s); the second one goes up the link.
    first_attempt = proxy.received["up"]
    await eventually(lambda: proxy.received["up"] > first_attempt)
    proxy.release("down")

    sent = await asyncio.wait_for(sending, 10)
    assert sent.duplicate
    assert sent.message_id == delivered.message_id
    assert alice.conn.reconnects == 0
    # Stored once: the next message Bob gets is the one Alice sends now.
    after = await alice.conn.send_message(chat.chat_id, "after")
    assert [m.text for m in await bob.messages_until(after.message_id)] == ["after"]
    assert [m.text for m in bob.received_messages()] == ["slow link", "after"]


async def test_send_failed_carries_the_id_for_a_later_retry(
    register: Register, open_device: OpenDevice, proxy: Proxy
) -> None:
    alice = await open_device(
        await register(), via_proxy=True, request_timeout=0.5, send_attempts=2
    )
    bob = await open_device(await register())
    chat = await alice.conn.create_chat([bob.user_id])

    proxy.hold("down")
    with pytest.raises(SendFailed) as failed:
        await alice.conn.send_message(chat.chat_id, "are you there?")
    assert failed.value.code == "timeout"
    proxy.release("down")

    again = await alice.conn.send_message(
        chat.chat_id, "are you there?", client_message_id=failed.value.client_message_id
    )
    assert again.duplicate
    assert again.client_message_id == failed.value.client_message_id
    # Stored once: nothing but it came before a message sent after the retry.
    after = await alice.conn.send_message(chat.chat_id, "after")
    await bob.messages_until(after.message_id)
    assert [m.text for m in bob.received_messages()] == ["are you there?", "after"]


async def test_receiver_sees_a_redelivered_message_once(
    register: Register, open_device: OpenDevice, proxy: Proxy
) -> None:
    alice = await open_device(await register())
    bob = await open_device(await register(), via_proxy=True)
    chat = await alice.conn.create_chat([bob.user_id])
    await bob.next(DrainedEvent)

    proxy.hold("up")  # Bob's ack will not reach the server
    sent = await alice.conn.send_message(chat.chat_id, "once")
    assert (await bob.next(MessageEvent)).message_id == sent.message_id
    await eventually(lambda: proxy.held["up"] > 0)  # the ack is stuck in the proxy
    proxy.cut()
    proxy.release("up")

    await bob.next(DrainedEvent)  # reconnected, and the backlog came again
    assert proxy.transcript.count(sent.message_id.encode()) == 2  # the server did resend it
    receipt = await alice.next(ReceiptEvent)  # ...and the copy was acked this time
    assert (receipt.type, receipt.up_to_seq) == ("delivered", 1)

    await alice.conn.send_message(chat.chat_id, "twice?")
    assert (await bob.next(MessageEvent)).text == "twice?"
    assert [m.text for m in bob.received_messages()] == ["once", "twice?"]
    assert bob.conn.reconnects == 1


async def test_reconnects_with_backoff_after_the_socket_drops(
    register: Register, open_device: OpenDevice, proxy: Proxy
) -> None:
    policy = ReconnectPolicy(initial_delay=0.2, multiplier=2, jitter=0, max_attempts=5)
    alice = await open_device(await register())
    bob = await open_device(await register(), via_proxy=True, reconnect=policy)
    chat = await alice.conn.create_chat([bob.user_id])
    accepted = proxy.accepted
    loop = asyncio.get_running_loop()

    proxy.refuse(2)  # the first two attempts fail
    started = loop.time()
    proxy.cut()
    sent = await alice.conn.send_message(chat.chat_id, "while you were away")
    chats = await bob.conn.get_chats()  # waits for the connection to come back
    elapsed = loop.time() - started

    assert [c.chat_id for c in chats] == [chat.chat_id]
    assert bob.conn.reconnects == 1
    assert proxy.accepted - accepted == 3
    assert elapsed >= 0.2 + 0.4 + 0.8 - 0.05  # waited before each of the three attempts
    message = await bob.next(MessageEvent)
    assert message.message_id == sent.message_id


async def test_reconnects_after_the_server_closes_abnormally(
    register: Register, open_device: OpenDevice, container: Container
) -> None:
    alice = await open_device(await register())
    bob = await open_device(await register())
    chat = await alice.conn.create_chat([bob.user_id])
    await bob.next(DrainedEvent)  # the first connection's backlog is out

    container.bus.disconnect(bob.session.device_id, 1011, "internal error")
    await bob.next(DrainedEvent)  # and this one comes after reconnecting
    assert bob.conn.reconnects == 1
    await bob.conn.send_message(chat.chat_id, "back")
    assert (await alice.next(MessageEvent)).text == "back"


async def test_reconnecting_gives_up_after_the_bounded_attempts(
    register: Register, open_device: OpenDevice, proxy: Proxy
) -> None:
    policy = ReconnectPolicy(initial_delay=0.01, max_attempts=3)
    bob = await open_device(await register(), via_proxy=True, reconnect=policy)
    accepted = proxy.accepted
    proxy.refuse(100)
    proxy.cut()

    error = await bob.ended()
    assert isinstance(error, ConnectionClosed)
    assert error.code == "reconnect_failed"
    assert proxy.accepted - accepted == 3
    with pytest.raises(ConnectionClosed):
        await bob.conn.get_chats()


async def test_revoked_device_gets_authentication_error_and_stays_down(
    sdk: PigeonClient, register: Register, open_device: OpenDevice, proxy: Proxy
) -> None:
    bob = await open_device(await register(), via_proxy=True)
    accepted = proxy.accepted

    await sdk.logout(bob.session)

    error = await bob.ended()
    assert isinstance(error, AuthenticationError)
    assert (error.code, error.close_code) == ("device_revoked", 1008)
    # Time passing is the point: no attempt within many reconnect delays (0.05 s).
    # A reconnect the client does not make has no barrier to wait for.
    await asyncio.sleep(0.5)
    assert proxy.accepted == accepted
    assert bob.conn.reconnects == 0
    assert not bob.conn.connected
    with pytest.raises(AuthenticationError):
        await bob.conn.send_message("any", "hello?")
    # A new connection is refused too: the token is gone and cannot be refreshed.
    with pytest.raises(AuthenticationError) as refused:
        await open_device(bob.session)
    assert refused.value.code == "invalid_token"


async def test_a_newer_connection_of_the_device_replaces_the_older(
    register: Register, open_device: OpenDevice
) -> None:
    session = await register()
    old = await open_device(session)
    new = await open_device(session)
    error = await old.ended()
    assert isinstance(error, ConnectionClosed)
    assert (error.code, error.close_code) == ("replaced", 4409)
    assert old.conn.reconnects == 0
    assert await new.conn.get_chats() == []


async def test_close_ends_events_and_refuses_commands(
    register: Register, open_device: OpenDevice
) -> None:
    bob = await open_device(await register())
    await bob.conn.close()
    assert await bob.ended() is None
    with pytest.raises(ConnectionClosed) as closed:
        await bob.conn.get_chats()
    assert closed.value.code == "closed"
    await bob.conn.close()  # idempotent


async def test_only_events_handed_out_are_acked(
    register: Register, open_device: OpenDevice, proxy: Proxy
) -> None:
    alice = await open_device(await register())
    bob_session = await register()
    chat = await alice.conn.create_chat([bob_session.user_id])
    await alice.conn.send_message(chat.chat_id, "first")

    bob = await open_device(bob_session)
    assert (await bob.next(MessageEvent)).text == "first"
    await bob.conn.close()  # "first" was handed out: acked

    second = await alice.conn.send_message(chat.chat_id, "second")
    idle = await open_device(bob_session, read=False, via_proxy=True)  # never reads its events
    await eventually(lambda: second.message_id.encode() in proxy.transcript)
    await idle.conn.close()  # "second" arrived but was not handed out: not acked

    again = await open_device(bob_session)
    await again.next(DrainedEvent)
    assert [m.text for m in again.received_messages()] == ["second"]

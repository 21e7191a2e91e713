"""A push that was due when the server stopped is sent once when it is back."""

from __future__ import annotations

from pigeon.config import Settings
from tests.fakes.webpush import FakeWebPush
from tests.push.conftest import COALESCE_SECONDS, running
from tests.push.test_webpush import direct_chat, subscribe
from tests.support import Outbox, mark, register


async def test_a_push_due_at_a_stop_is_sent_once_after_the_restart(
    settings: Settings, webpush: FakeWebPush, outbox: Outbox
) -> None:
    # The first run commits the message and stops before any push goes out: its
    # push worker is off, as if the process died right after the commit.
    async with running(settings.model_copy(update={"push_enabled": False})) as first:
        alice = await register(first.http, outbox, "+14155550201")
        bob = await register(first.http, outbox, "+14155550202")
        phone = await subscribe(first.http, webpush, bob)
        on_alice = await first.connect(alice)
        chat_id = await direct_chat(on_alice, bob)
        await mark(on_alice, chat_id, "sent before the stop")
        await on_alice.close()
    assert webpush.pushes == []

    async with running(settings) as second:
        [due] = await webpush.wait_for(phone, 1)
        assert due.payload["chatId"] == chat_id
        # A barrier for "once": the next push, for a new message, comes after any
        # repeat of the first would have (one device's pushes go out in order).
        on_alice = await second.connect(alice)
        await mark(on_alice, chat_id, "sent after the restart")
        [due, after] = await webpush.wait_for(phone, 2, timeout=COALESCE_SECONDS + 5)
        assert after.payload["unread"] == due.payload["unread"] + 1
        assert len(webpush.of(phone)) == 2
        await on_alice.close()


async def test_a_push_held_back_by_coalescing_survives_a_restart(
    settings: Settings, webpush: FakeWebPush, outbox: Outbox
) -> None:
    """The deferred push lives only in memory; the queue and pushed_seq bring it back."""
    slow = settings.model_copy(update={"push_coalesce_seconds": 2.0})
    async with running(slow) as first:
        alice = await register(first.http, outbox, "+14155550211")
        bob = await register(first.http, outbox, "+14155550212")
        phone = await subscribe(first.http, webpush, bob)
        on_alice = await first.connect(alice)
        chat_id = await direct_chat(on_alice, bob)
        await mark(on_alice, chat_id, "one")
        [pushed] = await webpush.wait_for(phone, 1)
        await mark(on_alice, chat_id, "two")  # within the window: held back
        await on_alice.close()

    async with running(slow) as second:
        assert second.container.push_worker is not None
        [pushed, held] = await webpush.wait_for(phone, 2, timeout=10)
        assert held.payload["unread"] == pushed.payload["unread"] + 1
        assert held.at - pushed.at >= 1.9  # the window still held after the restart

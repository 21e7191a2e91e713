"""Attack suite: random sequences of group commands against a model of who may do what.

Hypothesis draws a list of commands by four users (create a group, add and
remove members, leave, set roles, rename, send, mark read, look at a chat) and
replays them over a live server while a small model predicts every answer.
Checked for each command: it is refused exactly when the model says so, with
the model's code (not_admin, chat_not_found, already_member, not_member,
last_admin, ...), and a sent message gets the seq the model predicts. Checked
at the end: each user received a message if and only if they were a member
when it was sent, in strictly increasing seq order, with the same id and
content as everyone else.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from pigeon.domain.ids import new_id
from tests.gateway.conftest import Connect, Register
from tests.live import WsClient
from tests.support import FakeClock

USERS = 4

# -- the commands Hypothesis draws ------------------------------------------------------
# A chat is named by its index among the chats created so far (modulo their
# number); -1 (or no chat yet) names a chat that does not exist. Who acts on a
# chat, and on whom, is a user's number (0-3) or, from USERS on, one of the
# chat's admins (actor) or one of the users the command could succeed on
# (target), so that commands that go through are as common as refused ones.

user = st.integers(0, USERS - 1)
someone = st.integers(0, USERS + 1)
chat_ref = st.integers(-1, 3)
OPERATION = st.one_of(
    st.tuples(st.just("create"), user, st.frozensets(user, min_size=1, max_size=USERS - 1)),
    st.tuples(st.just("add"), someone, chat_ref, someone),
    st.tuples(st.just("remove"), someone, chat_ref, someone),  # target == actor: leave
    st.tuples(st.just("setRole"), someone, chat_ref, someone, st.sampled_from(["admin", "member"])),
    st.tuples(st.just("rename"), someone, chat_ref),
    st.tuples(st.just("send"), user, chat_ref),
    st.tuples(st.just("markRead"), user, chat_ref, st.integers(0, 40)),
    st.tuples(st.just("getChat"), user, chat_ref),
)


# -- the model ---------------------------------------------------------------------------


@dataclass
class Sent:
    """A message the model expects in a chat: who gets it and what it says."""

    seq: int
    recipients: frozenset[int]
    kind: str
    text: str = ""
    system: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelChat:
    chat_id: str
    roles: dict[int, str]  # member -> role
    joined: dict[int, int]  # member -> the step they joined at (the clock's second)
    last_seq: int = 0
    messages: list[Sent] = field(default_factory=list)

    def record(self, recipients: set[int], kind: str, **details: Any) -> int:
        self.last_seq += 1
        self.messages.append(Sent(self.last_seq, frozenset(recipients), kind, **details))
        return self.last_seq


@dataclass
class Players:
    sessions: list[dict[str, Any]]
    sockets: list[WsClient]
    ids: list[str]

    def index(self, user_id: str) -> int:
        return self.ids.index(user_id)


@pytest.fixture
async def players(user: Register, connect: Connect) -> Players:
    sessions = [await user() for _ in range(USERS)]
    sockets = []
    for session in sessions:
        ws = await connect(session)  # acks every event, as a client does
        await ws.next_event("drained")
        sockets.append(ws)
    return Players(sessions, sockets, [s["user_id"] for s in sessions])


class Replay:
    """One example: the commands against the server and the model side by side."""

    def __init__(self, players: Players, clock: FakeClock) -> None:
        self.p = players
        self.clock = clock
        self.chats: list[ModelChat] = []
        self.step = 0
        self.texts = itertools.count(1)

    def chat(self, ref: int) -> tuple[str, ModelChat | None]:
        if ref < 0 or not self.chats:
            return new_id(), None
        chat = self.chats[ref % len(self.chats)]
        return chat.chat_id, chat

    @staticmethod
    def pick(value: int, candidates: set[int]) -> int:
        """User ``value``, or from USERS on one of ``candidates`` (if there are any)."""
        if value < USERS:
            return value
        return sorted(candidates)[value % len(candidates)] if candidates else value % USERS

    def heir_order(self, chat: ModelChat) -> list[int]:
        """Members, longest-standing first (ties by user id, as the server orders them)."""
        return sorted(chat.roles, key=lambda u: (chat.joined[u], self.p.ids[u]))

    async def run(self, operation: tuple[Any, ...]) -> None:
        self.step += 1
        self.clock.advance(seconds=1)  # so "longest-standing" is well defined
        kind, who, *rest = operation
        if kind == "create":
            type_, data, expected = self._create(who, *rest)
        else:
            chat_id, chat = self.chat(rest[0])
            admins = {u for u, role in chat.roles.items() if role == "admin"} if chat else set()
            who = self.pick(who, admins)
            type_, data, expected = getattr(self, f"_{kind}")(who, chat_id, chat, *rest[1:])
        answer = await self.p.sockets[who].request(type_, data)
        note(f"step {self.step}: {operation} (user {who}) -> {answer}")
        context = (operation, answer)
        if isinstance(expected, str):  # a refusal
            assert answer["ok"] is False, context
            assert answer["error"]["code"] == expected, context
        else:
            assert answer["ok"] is True, context
            expected(answer["data"])

    # Each handler returns (command, data, expected): an error code, or a check of the
    # answer's data that also moves the model forward.

    def _create(self, who: int, others: frozenset[int]) -> Any:
        participants = [self.p.ids[u] for u in sorted(others)]
        data = {"participants": participants, "name": f"group {self.step}"}
        if not participants:
            return "createChat", data, "invalid_frame"  # the schema needs one at least
        if not others - {who}:
            return "createChat", data, "invalid_participants"

        def check(result: dict[str, Any]) -> None:
            assert result["created"] is True
            members = {who, *others}
            chat = ModelChat(
                result["chatId"],
                {u: "admin" if u == who else "member" for u in members},
                dict.fromkeys(members, self.step),
            )
            rest = sorted(self.p.ids[u] for u in others - {who})
            chat.record(
                members,
                "system",
                system={"action": "created", "members": [self.p.ids[who], *rest]},
            )
            self.chats.append(chat)

        return "createChat", data, check

    def _add(self, who: int, chat_id: str, chat: ModelChat | None, target: int) -> Any:
        target = self.pick(target, set(range(USERS)) - set(chat.roles) if chat else set())
        data = {"chatId": chat_id, "userId": self.p.ids[target], "operation": "ADD"}
        if chat is None or who not in chat.roles:
            return "modifyChatParticipants", data, "chat_not_found"
        if chat.roles[who] != "admin":
            return "modifyChatParticipants", data, "not_admin"
        if target in chat.roles:
            return "modifyChatParticipants", data, "already_member"

        def check(result: dict[str, Any]) -> None:
            assert result == {"status": "SUCCESS"}
            chat.roles[target] = "member"
            chat.joined[target] = self.step
            system = {"action": "added", "userId": self.p.ids[target]}
            chat.record(set(chat.roles), "system", system=system)

        return "modifyChatParticipants", data, check

    def _remove(self, who: int, chat_id: str, chat: ModelChat | None, target: int) -> Any:
        target = self.pick(target, set(chat.roles) if chat else set())
        data = {"chatId": chat_id, "userId": self.p.ids[target], "operation": "REMOVE"}
        if chat is None or who not in chat.roles:
            return "modifyChatParticipants", data, "chat_not_found"
        if chat.roles[who] != "admin" and target != who:
            return "modifyChatParticipants", data, "not_admin"
        if target not in chat.roles:
            return "modifyChatParticipants", data, "not_member"

        def check(result: dict[str, Any]) -> None:
            assert result == {"status": "SUCCESS"}
            before = set(chat.roles)
            del chat.roles[target]
            del chat.joined[target]
            action = "left" if target == who else "removed"
            chat.record(before, "system", system={"action": action, "userId": self.p.ids[target]})
            if chat.roles and "admin" not in chat.roles.values():
                heir = self.heir_order(chat)[0]
                chat.roles[heir] = "admin"
                system = {"action": "role", "userId": self.p.ids[heir], "role": "admin"}
                chat.record(set(chat.roles), "system", system=system)

        return "modifyChatParticipants", data, check

    def _setRole(
        self, who: int, chat_id: str, chat: ModelChat | None, target: int, role: str
    ) -> Any:
        target = self.pick(target, set(chat.roles) if chat else set())
        data = {"chatId": chat_id, "userId": self.p.ids[target], "role": role}
        if chat is None or who not in chat.roles:
            return "setRole", data, "chat_not_found"
        if chat.roles[who] != "admin":
            return "setRole", data, "not_admin"
        if target not in chat.roles:
            return "setRole", data, "not_member"
        admins = sum(r == "admin" for r in chat.roles.values())
        if chat.roles[target] != role and role == "member" and admins <= 1:
            return "setRole", data, "last_admin"

        def check(result: dict[str, Any]) -> None:
            assert result == {"status": "SUCCESS"}
            if chat.roles[target] != role:  # the same role again changes nothing
                chat.roles[target] = role
                system = {"action": "role", "userId": self.p.ids[target], "role": role}
                chat.record(set(chat.roles), "system", system=system)

        return "setRole", data, check

    def _rename(self, who: int, chat_id: str, chat: ModelChat | None) -> Any:
        name = f"renamed {self.step}"
        data = {"chatId": chat_id, "name": name}
        if chat is None or who not in chat.roles:
            return "updateChat", data, "chat_not_found"
        if chat.roles[who] != "admin":
            return "updateChat", data, "not_admin"

        def check(result: dict[str, Any]) -> None:
            assert result == {"status": "SUCCESS"}
            chat.record(set(chat.roles), "system", system={"action": "renamed", "name": name})

        return "updateChat", data, check

    def _send(self, who: int, chat_id: str, chat: ModelChat | None) -> Any:
        text = f"text {next(self.texts)} from {who}"
        data = {"chatId": chat_id, "clientMessageId": new_id(), "message": text}
        if chat is None or who not in chat.roles:
            return "sendMessage", data, "chat_not_found"

        def check(result: dict[str, Any]) -> None:
            assert result["duplicate"] is False
            seq = chat.record(set(chat.roles) - {who}, "text", text=text)
            assert result["seq"] == seq, (result, seq)

        return "sendMessage", data, check

    def _markRead(self, who: int, chat_id: str, chat: ModelChat | None, up_to: int) -> Any:
        data = {"chatId": chat_id, "upToSeq": up_to}
        if chat is None or who not in chat.roles:
            return "markRead", data, "chat_not_found"

        def check(result: dict[str, Any]) -> None:
            assert result == {"upToSeq": min(up_to, chat.last_seq)}

        return "markRead", data, check

    def _getChat(self, who: int, chat_id: str, chat: ModelChat | None) -> Any:
        if chat is None or who not in chat.roles:
            return "getChat", {"chatId": chat_id}, "chat_not_found"

        def check(result: dict[str, Any]) -> None:
            assert result["lastSeq"] == chat.last_seq
            members = [(m["userId"], m["role"]) for m in result["members"]]
            expected = [(self.p.ids[u], chat.roles[u]) for u in self.heir_order(chat)]
            assert members == expected

        return "getChat", {"chatId": chat_id}, check

    # -- the end of an example: what everyone received -----------------------------------

    async def barrier(self) -> list[dict[str, list[dict[str, Any]]]]:
        """Each user's message events per chat, once everything sent so far has arrived.

        A new group with everyone is the barrier: its "created" message is queued
        after every earlier event, and each device gets its queue in order.
        """
        barrier = await self.p.sockets[0].call(
            "createChat", {"participants": self.p.ids[1:], "name": "barrier"}
        )
        per_user = []
        for ws in self.p.sockets:
            chats: dict[str, list[dict[str, Any]]] = {}
            while True:
                data = (await ws.next_event("message", timeout=10))["data"]
                if data["chatId"] == barrier["chatId"]:
                    break
                chats.setdefault(data["chatId"], []).append(data)
            per_user.append(chats)
        return per_user

    async def check_deliveries(self) -> None:
        per_user = await self.barrier()
        known = {chat.chat_id for chat in self.chats}
        for user, chats in enumerate(per_user):
            assert set(chats) <= known, "a message of a chat from nowhere"
            for chat in self.chats:
                got = chats.get(chat.chat_id, [])
                seqs = [m["seq"] for m in got]
                assert seqs == sorted(set(seqs)), (user, seqs)  # strictly increasing
                expected = [m for m in chat.messages if user in m.recipients]
                assert seqs == [m.seq for m in expected], (user, chat.chat_id)
                for message, sent in zip(got, expected, strict=True):
                    assert message["kind"] == sent.kind
                    if sent.kind == "text":
                        assert message["message"] == sent.text
                    else:
                        system = message["system"]
                        assert {k: system[k] for k in sent.system} == sent.system
        # Everyone who got a message got the same one.
        ids: dict[tuple[str, int], str] = {}
        for chats in per_user:
            for messages in chats.values():
                for m in messages:
                    assert ids.setdefault((m["chatId"], m["seq"]), m["messageId"]) == m["messageId"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.timeout(900)  # passing takes ~20 s; shrinking a failure can take minutes
@settings(
    max_examples=40,
    deadline=None,
    database=None,
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=st.lists(OPERATION, min_size=15, max_size=40))
async def test_random_group_commands_match_the_model(
    operations: list[tuple[Any, ...]], players: Players, clock: FakeClock
) -> None:
    replay = Replay(players, clock)
    await replay.barrier()  # whatever an earlier (failed) example left behind goes
    # Two groups to start with, so most drawn commands have something to act on.
    setup = [("create", 0, frozenset({1, 2})), ("create", 1, frozenset({2, 3}))]
    for operation in [*setup, *operations]:
        await replay.run(operation)
    await replay.check_deliveries()

"""How ``pigeon chat`` prints a chat: messages, files, receipts, group changes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.text import Text

from pigeon.cli import terminal
from pigeon.cli.receipt_status import DeliveryStatus, MemberState, State
from pigeon.client import Attachment, ChatDetails, MessageEvent, StoredMessage

Message = MessageEvent | StoredMessage

_MARKS: dict[State, tuple[str, str]] = {
    "sent": ("✓", "dim"),
    "delivered": ("✓✓", "dim"),
    "read": ("✓✓ read", "bold blue"),
}


def human_size(size: int) -> str:
    """``512 B``, ``1.5 KiB``, ``12.0 MiB``..."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


def describe_attachment(attachment: Attachment) -> str:
    """``[name, type, size, id]``, as ``open`` lists a file."""
    return (
        f"[{attachment.file_name}, {attachment.mime_type}, "
        f"{human_size(attachment.size)}, {attachment.attachment_id}]"
    )


def short_id(user_id: str) -> str:
    return f"user…{user_id[-6:]}"


def clock(moment: datetime) -> str:
    return moment.astimezone().strftime("%H:%M")


class Names:
    """People's display names (their profile name, else a short id); this user is "you"."""

    def __init__(self, me: str, names: dict[str, str]) -> None:
        self.me = me
        self.names = names

    def __call__(self, user_id: str | None) -> str:
        if user_id is None:
            return "pigeon"
        if user_id == self.me:
            return "you"
        return self.names.get(user_id) or short_id(user_id)

    def system_text(self, system: dict[str, Any]) -> str:
        """A group change in words."""
        action = system.get("action")
        actor = self(system.get("actorId"))
        target = self(system.get("userId"))
        texts = {
            "created": f"{actor} created the group {system.get('name', '')!r}",
            "added": f"{actor} added {target}",
            "removed": f"{actor} removed {target}",
            "left": f"{target} left",
            "role": f"{target} is now {system.get('role', '?')}",
            "renamed": f"{actor} renamed the group to {system.get('name', '')!r}",
            "disappearing": _disappearing(actor, system.get("seconds", 0)),
        }
        return texts.get(str(action), f"group change: {action}")

    def preview(self, message: Message) -> str:
        """A message in one line: ``Bob: hello``, a system message in words."""
        if message.kind == "system":
            return self.system_text(message.system or {})
        files = f" [{len(message.attachments)} file(s)]" if message.attachments else ""
        return f"{self(message.sender_id)}: {message.text}{files}"


def chat_title(details: ChatDetails, names: Names) -> str:
    """A group's name; for a 1:1 chat, the other person's."""
    if details.kind == "group":
        return details.name or "(unnamed group)"
    others = [names(m.user_id) for m in details.members if m.user_id != names.me]
    return ", ".join(others) or "nobody"


class ChatView:
    """Prints one chat: messages with their state (✓ sent, ✓✓ delivered, ✓✓ read), files."""

    def __init__(self, chat_id: str, names: Names, status: DeliveryStatus, group: bool) -> None:
        self.chat_id = chat_id
        self.names = names
        self.status = status
        self.group = group

    def header(self, title: str) -> None:
        terminal.console.rule(Text(title if self.group else f"chat with {title}", style="bold"))
        self.notice("Type a message and press Enter; /info N for who got #N; /quit or Ctrl-D.")

    def message(self, message: Message, state: State | None = None) -> None:
        if message.kind == "system":
            text = self.names.system_text(message.system or {})
            terminal.console.print(Text(f"— {text} —", style="dim italic"), soft_wrap=True)
            return
        mine = message.sender_id == self.names.me
        parts: list[str | tuple[str, str]] = [
            (f"[{clock(message.created_at)}] ", "dim"),
            (self.names(message.sender_id), "bold green" if mine else "bold cyan"),
            ": ",
            message.text,
            (f"  #{message.seq}", "dim"),
        ]
        if mine:
            mark, style = _MARKS[state or "sent"]
            parts.append((f" {mark}", style))
        terminal.console.print(Text.assemble(*parts), soft_wrap=True)
        self.files(message.attachments)

    def files(self, attachments: Sequence[Attachment]) -> None:
        for attachment in attachments:
            terminal.console.print(
                Text.assemble(("  📎 ", "dim"), describe_attachment(attachment)), soft_wrap=True
            )

    def progress(self, state: State, seq: int, who: str) -> None:
        """``✓✓ delivered to Bob up to #3``, ``✓✓ read by everyone up to #5``."""
        style = "bold blue" if state == "read" else "dim"
        phrase = f"read by {who}" if state == "read" else f"delivered to {who}"
        terminal.console.print(
            Text.assemble(("  ✓✓ ", style), (f"{phrase} up to #{seq}", "dim")), soft_wrap=True
        )

    def info(self, message: StoredMessage, states: list[MemberState]) -> None:
        """Who has received and read one of this user's messages (``/info``)."""
        self.notice(f"#{message.seq} {message.text!r}:")
        for entry in states:
            label = {"sent": "not yet received", "delivered": "delivered", "read": "read"}
            self.notice(f"  {self.names(entry.user_id)}: {label[entry.state]}")
        if not states:
            self.notice("  nobody else was in the chat")

    def elsewhere(self, title: str, message: Message) -> None:
        """A message of another chat, in full: it is stored, and shown there too."""
        self.notice(f"• in {title}: {self.names.preview(message)}")
        self.files(message.attachments)

    def saved(self, path: Path) -> None:
        self.notice(f"  saved to {path}")

    def notice(self, text: str) -> None:
        terminal.say(text, "dim")


_TIMERS = {86_400: "24 hours", 604_800: "7 days", 7_776_000: "90 days"}


def _disappearing(actor: str, seconds: int) -> str:
    if not seconds:
        return f"{actor} turned off disappearing messages"
    return f"{actor} made new messages disappear after {_TIMERS.get(seconds, f'{seconds} s')}"

import { describe, expect, it } from "vitest";
import {
  applyMessage,
  applyReceipt,
  filterChats,
  fromEvent,
  markedRead,
  messageStatus,
  newChat,
  sortChats,
  sortMessages,
  withMessage,
} from "../src/lib/state";
import type { StoredMessage } from "../src/lib/types";

const ME = "me";

function mine(seq: number | null, sent = true): StoredMessage {
  return {
    key: `local:${seq}`,
    chatId: "c1",
    messageId: seq === null ? null : `m${seq}`,
    clientMessageId: `c${seq}`,
    seq,
    kind: "text",
    senderId: ME,
    text: "hello",
    attachments: [],
    createdAt: "2026-01-01T12:00:00.000Z",
    own: true,
    sent,
  };
}

describe("ticks", () => {
  const chat = newChat({ chatId: "c1", kind: "group", members: [ME, "a", "b"] });

  it("is pending until the server answered", () => {
    expect(messageStatus(mine(null, false), chat, ME)).toBe("pending");
  });

  it("is sent, then delivered once every other member's device acked", () => {
    const one = applyReceipt(chat, { type: "delivered", userId: "a", upToSeq: 3 }, ME);
    expect(messageStatus(mine(3), one, ME)).toBe("sent");
    const both = applyReceipt(one, { type: "delivered", userId: "b", upToSeq: 5 }, ME);
    expect(messageStatus(mine(3), both, ME)).toBe("delivered");
    expect(messageStatus(mine(6), both, ME)).toBe("sent");
  });

  it("counts read as delivered, and is read once everyone read", () => {
    let c = applyReceipt(chat, { type: "read", userId: "a", upToSeq: 4 }, ME);
    c = applyReceipt(c, { type: "delivered", userId: "b", upToSeq: 4 }, ME);
    expect(messageStatus(mine(4), c, ME)).toBe("delivered");
    c = applyReceipt(c, { type: "read", userId: "b", upToSeq: 4 }, ME);
    expect(messageStatus(mine(4), c, ME)).toBe("read");
  });

  it("never goes back when an older receipt comes again", () => {
    const c = applyReceipt(chat, { type: "read", userId: "a", upToSeq: 9 }, ME);
    expect(applyReceipt(c, { type: "read", userId: "a", upToSeq: 2 }, ME)).toBe(c);
  });
});

describe("unread", () => {
  const chat = newChat({ chatId: "c1", kind: "direct", members: [ME, "a"] });
  const incoming = (seq: number): StoredMessage => ({ ...mine(seq), senderId: "a", own: false });

  it("counts others' messages past the read mark, not ours", () => {
    let c = applyMessage(chat, incoming(1), ME);
    c = applyMessage(c, mine(2), ME);
    c = applyMessage(c, incoming(3), ME);
    expect(c.unread).toBe(2);
    expect(c.lastSeq).toBe(3);
    expect(markedRead(c, 3).unread).toBe(0);
  });

  it("is cleared by a read receipt from our own other device", () => {
    const c = applyMessage(chat, incoming(1), ME);
    expect(applyReceipt(c, { type: "read", userId: ME, upToSeq: 1 }, ME).unread).toBe(0);
  });
});

describe("ordering", () => {
  it("puts the latest activity first", () => {
    const a = { ...newChat({ chatId: "a", kind: "direct" }), lastAt: "2026-01-01T10:00:00.000Z" };
    const b = { ...newChat({ chatId: "b", kind: "direct" }), lastAt: "2026-01-01T11:00:00.000Z" };
    expect(sortChats([a, b]).map((c) => c.chatId)).toEqual(["b", "a"]);
  });

  it("sorts messages by seq with unsent ones last", () => {
    const sorted = sortMessages([mine(null, false), mine(5), mine(2)]);
    expect(sorted.map((m) => m.seq)).toEqual([2, 5, null]);
  });

  it("never shows a message twice", () => {
    // The chat's first page read from the store while the message's event was stored.
    const page = [mine(1), mine(2)];
    const shown = withMessage(page, mine(2));
    expect(shown.map((m) => m.key)).toEqual(["local:1", "local:2"]);
    // Our own send, answered: the answered copy replaces the pending one.
    const pending = mine(null, false);
    const answered = { ...pending, seq: 3, sent: true };
    expect(withMessage([...page, pending], answered).map((m) => [m.key, m.seq])).toEqual([
      ["local:1", 1],
      ["local:2", 2],
      ["local:null", 3],
    ]);
  });

  it("filters chats by title or last message", () => {
    const a = { ...newChat({ chatId: "a", kind: "direct" }), lastText: "see you" };
    const b = newChat({ chatId: "b", kind: "group", name: "Trip" });
    const title = (c: { name: string }) => c.name;
    expect(filterChats([a, b], "trip", title).map((c) => c.chatId)).toEqual(["b"]);
    expect(filterChats([a, b], "SEE", title).map((c) => c.chatId)).toEqual(["a"]);
  });
});

describe("events", () => {
  it("keeps markup as plain text", () => {
    const message = fromEvent(
      {
        chatId: "c1",
        messageId: "m1",
        seq: 1,
        kind: "text",
        senderId: "a",
        message: "<img src=x onerror=alert(1)>",
        attachments: [],
        createdAt: "2026-01-01T12:00:00.000Z",
        inboxSeq: 4,
      },
      ME,
    );
    expect(message.text).toBe("<img src=x onerror=alert(1)>");
    expect(message.key).toBe("m1");
    expect(message.own).toBe(false);
  });
});

import "fake-indexeddb/auto";
import { describe, expect, it } from "vitest";
import { openDB } from "idb";
import { Store, wipe } from "../src/lib/db";
import { newChat } from "../src/lib/state";
import type { StoredMessage } from "../src/lib/types";

function message(key: string, own: boolean, sent: boolean): StoredMessage {
  return {
    key,
    chatId: "c1",
    messageId: sent ? key.replace("local:", "m-") : null,
    clientMessageId: own ? key : null,
    seq: sent ? 1 : null,
    kind: "text",
    senderId: "me",
    text: "hi",
    attachments: [],
    createdAt: "2026-01-01T12:00:00.000Z",
    own,
    sent,
  };
}

describe("Store", () => {
  it("keeps the session, chats and messages across openings", async () => {
    const name = "t1";
    const store = await Store.open(name);
    await store.saveSession({ userId: "u", deviceId: "d", accessToken: "a", refreshToken: "r" });
    await store.putChat(newChat({ chatId: "c1", kind: "direct" }));
    await store.putMessage(message("m1", false, true));
    store.close();
    const again = await Store.open(name);
    expect((await again.session())?.userId).toBe("u");
    expect((await again.chats()).map((c) => c.chatId)).toEqual(["c1"]);
    expect(await again.hasMessage("m1")).toBe(true);
    expect(await again.hasMessage("m2")).toBe(false);
    await wipe(again, name);
    const wiped = await Store.open(name);
    expect(await wiped.session()).toBeUndefined();
    wiped.close();
  });

  it("reads the newest messages of a chat in order, unsent ones last", async () => {
    const store = await Store.open("t3");
    for (const seq of [5, 1, 3, 2, 4]) {
      await store.putMessage({ ...message(`m${seq}`, false, true), seq });
    }
    await store.putMessage(message("local:x", true, false));
    await store.putMessage({ ...message("other", false, true), chatId: "c2", seq: 9 });
    const latest = await store.latest("c1", 3);
    expect(latest.map((m) => m.key)).toEqual(["m4", "m5", "local:x"]);
    expect((await store.latest("c1", 100)).length).toBe(6);
    store.close();
  });

  it("lists only our unanswered sends as pending", async () => {
    const store = await Store.open("t2");
    await store.putMessage(message("local:a", true, false));
    await store.putMessage(message("local:b", true, true));
    await store.putMessage(message("m3", false, true));
    expect((await store.pending()).map((m) => m.key)).toEqual(["local:a"]);
    store.close();
  });
});

describe("Store: a long chat and photos", () => {
  it("counts and reads the messages before the newest window, oldest first", async () => {
    const store = await Store.open("t-window");
    for (let seq = 1; seq <= 30; seq++) {
      await store.putMessage({ ...message(`m${seq}`, false, true), seq, messageId: `m${seq}` });
    }
    const newest = await store.latest("c1", 10);
    expect(newest.map((m) => m.seq)).toEqual([21, 22, 23, 24, 25, 26, 27, 28, 29, 30]);
    expect(await store.countBefore("c1", newest[0].order ?? 0)).toBe(20);
    const earlier = await store.allBefore("c1", newest[0].order ?? 0);
    expect(earlier.map((m) => m.seq)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(await store.countBefore("other", 100)).toBe(0);
    const window = await store.window("c1", 10);
    expect(window.messages.map((m) => m.seq)).toEqual(newest.map((m) => m.seq));
    expect(window.earlier).toBe(20);
    expect((await store.window("c1", 50)).earlier).toBe(0);
    expect((await store.window("c1", 50)).messages).toHaveLength(30);
    expect(await store.window("none", 10)).toEqual({ messages: [], earlier: 0 });
    await wipe(store, "t-window");
  });

  it("keeps photos, and that someone has none", async () => {
    const store = await Store.open("t-photos");
    await store.putPhoto({ userId: "u1", blob: new Blob(["jpeg"]), updatedAt: "2026-01-01T00:00:00Z" });
    await store.putPhoto({ userId: "u2", blob: null, updatedAt: null });
    expect((await store.photo("u1"))?.updatedAt).toBe("2026-01-01T00:00:00Z");
    expect((await store.photo("u2"))?.blob).toBeNull();
    expect(await store.photo("u3")).toBeUndefined();
    expect((await store.photos()).map((p) => p.userId).sort()).toEqual(["u1", "u2"]);
    await wipe(store, "t-photos");
  });
});

describe("Store: upgrade", () => {
  it("adds the photos store to a database of the first version, keeping what it held", async () => {
    const name = "t-upgrade";
    const old = await openDB(name, 1, {
      upgrade(db) {
        db.createObjectStore("kv");
        db.createObjectStore("chats", { keyPath: "chatId" });
        const messages = db.createObjectStore("messages", { keyPath: "key" });
        messages.createIndex("byChatOrder", ["chatId", "order"]);
        messages.createIndex("byMessageId", "messageId");
        db.createObjectStore("users", { keyPath: "id" });
        db.createObjectStore("media", { keyPath: "attachmentId" });
      },
    });
    await old.put("kv", { userId: "u", deviceId: "d", accessToken: "a", refreshToken: "r" }, "session");
    old.close();
    const store = await Store.open(name);
    expect((await store.session())?.userId).toBe("u");
    await store.putPhoto({ userId: "u", blob: null, updatedAt: null });
    expect(await store.photos()).toHaveLength(1);
    await wipe(store, name);
  });
});

import "fake-indexeddb/auto";
import { describe, expect, it } from "vitest";
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

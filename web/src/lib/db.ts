// IndexedDB: the server deletes messages once delivered, so this device keeps its own history.
import { openDB, type DBSchema, type IDBPDatabase } from "idb";
import { orderOf } from "./state";
import type { Chat, Session, StoredMessage } from "./types";

export const DB_NAME = "pigeon";

interface Schema extends DBSchema {
  kv: { key: string; value: unknown };
  chats: { key: string; value: Chat };
  messages: {
    key: string;
    value: StoredMessage;
    indexes: { byChatOrder: [string, number]; byMessageId: string };
  };
  users: { key: string; value: { id: string; name: string } };
  media: { key: string; value: { attachmentId: string; blob: Blob } };
}

export class Store {
  private constructor(private readonly db: IDBPDatabase<Schema>) {}

  static async open(name = DB_NAME): Promise<Store> {
    const db = await openDB<Schema>(name, 1, {
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
    return new Store(db);
  }

  close(): void {
    this.db.close();
  }

  async session(): Promise<Session | undefined> {
    return (await this.db.get("kv", "session")) as Session | undefined;
  }

  async saveSession(session: Session): Promise<void> {
    await this.db.put("kv", session, "session");
  }

  async chats(): Promise<Chat[]> {
    return this.db.getAll("chats");
  }

  async putChat(chat: Chat): Promise<void> {
    await this.db.put("chats", chat);
  }

  async deleteChat(chatId: string): Promise<void> {
    await this.db.delete("chats", chatId);
  }

  /** The newest `limit` messages of a chat, oldest first: a long chat opens as fast as a short one. */
  async latest(chatId: string, limit: number): Promise<StoredMessage[]> {
    const range = IDBKeyRange.bound([chatId, -Infinity], [chatId, Infinity]);
    const found: StoredMessage[] = [];
    let cursor = await this.db.transaction("messages").store.index("byChatOrder").openCursor(range, "prev");
    while (cursor && found.length < limit) {
      found.push(cursor.value);
      cursor = await cursor.continue();
    }
    return found.reverse();
  }

  /** Whether a message with this server id is stored already (events may come twice). */
  async hasMessage(messageId: string): Promise<boolean> {
    const key = await this.db.getKeyFromIndex("messages", "byMessageId", messageId);
    return key !== undefined;
  }

  async putMessage(message: StoredMessage): Promise<void> {
    await this.db.put("messages", { ...message, order: orderOf(message) });
  }

  /** Our sends the server has not answered yet, to send again after a reconnect. */
  async pending(): Promise<StoredMessage[]> {
    const all = await this.db.getAll("messages");
    return all.filter((m) => m.own && !m.sent);
  }

  async users(): Promise<{ id: string; name: string }[]> {
    return this.db.getAll("users");
  }

  async putUser(user: { id: string; name: string }): Promise<void> {
    await this.db.put("users", user);
  }

  async media(attachmentId: string): Promise<Blob | undefined> {
    return (await this.db.get("media", attachmentId))?.blob;
  }

  async putMedia(attachmentId: string, blob: Blob): Promise<void> {
    await this.db.put("media", { attachmentId, blob });
  }
}

/** Forget everything this device kept (logout). */
export async function wipe(store: Store, name = DB_NAME): Promise<void> {
  store.close();
  await new Promise<void>((resolve) => {
    const request = indexedDB.deleteDatabase(name);
    request.onsuccess = request.onerror = request.onblocked = () => resolve();
  });
}

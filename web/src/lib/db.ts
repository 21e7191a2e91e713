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
  /** Profile photos (the server's thumbnail), null when the person has none or hides it. */
  photos: { key: string; value: StoredPhoto };
}

export interface StoredPhoto {
  userId: string;
  blob: Blob | null;
  /** The profile's `photo.updatedAt` this blob is of (null: no photo). */
  updatedAt: string | null;
}

export class Store {
  private constructor(private readonly db: IDBPDatabase<Schema>) {}

  static async open(name = DB_NAME): Promise<Store> {
    const db = await openDB<Schema>(name, 2, {
      upgrade(db, oldVersion) {
        if (oldVersion < 1) {
          db.createObjectStore("kv");
          db.createObjectStore("chats", { keyPath: "chatId" });
          const messages = db.createObjectStore("messages", { keyPath: "key" });
          messages.createIndex("byChatOrder", ["chatId", "order"]);
          messages.createIndex("byMessageId", "messageId");
          db.createObjectStore("users", { keyPath: "id" });
          db.createObjectStore("media", { keyPath: "attachmentId" });
        }
        if (oldVersion < 2) db.createObjectStore("photos", { keyPath: "userId" });
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
    return (await this.window(chatId, limit)).messages;
  }

  /** The newest `limit` messages of a chat (oldest first) and how many are stored before them,
   * in four requests whatever the chat's length: a key cursor walks back `limit` index entries
   * (no values read), then one getAll reads from there on, and one count the rest. */
  async window(chatId: string, limit: number): Promise<{ messages: StoredMessage[]; earlier: number }> {
    const index = this.db.transaction("messages").store.index("byChatOrder");
    let cursor = await index.openKeyCursor(IDBKeyRange.bound([chatId, -Infinity], [chatId, Infinity]), "prev");
    if (!cursor) return { messages: [], earlier: 0 };
    if (limit > 1) cursor = await cursor.advance(limit - 1);
    if (!cursor) return { messages: await index.getAll(IDBKeyRange.bound([chatId, -Infinity], [chatId, Infinity])), earlier: 0 };
    const from = cursor.key[1];
    const [messages, earlier] = await Promise.all([
      index.getAll(IDBKeyRange.bound([chatId, from], [chatId, Infinity])),
      index.count(before(chatId, from)),
    ]);
    return { messages, earlier };
  }

  /** How many messages of a chat sort before `order` (the ones a window does not hold yet). */
  async countBefore(chatId: string, order: number): Promise<number> {
    return this.db.countFromIndex("messages", "byChatOrder", before(chatId, order));
  }

  /** Every message of a chat that sorts before `order`, oldest first (one request). */
  async allBefore(chatId: string, order: number): Promise<StoredMessage[]> {
    return this.db.getAllFromIndex("messages", "byChatOrder", before(chatId, order));
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

  async photos(): Promise<StoredPhoto[]> {
    return this.db.getAll("photos");
  }

  async photo(userId: string): Promise<StoredPhoto | undefined> {
    return this.db.get("photos", userId);
  }

  async putPhoto(photo: StoredPhoto): Promise<void> {
    await this.db.put("photos", photo);
  }
}

function before(chatId: string, order: number): IDBKeyRange {
  return IDBKeyRange.bound([chatId, -Infinity], [chatId, order], false, true);
}

/** Forget everything this device kept (logout). */
export async function wipe(store: Store, name = DB_NAME): Promise<void> {
  store.close();
  await new Promise<void>((resolve) => {
    const request = indexedDB.deleteDatabase(name);
    request.onsuccess = request.onerror = request.onblocked = () => resolve();
  });
}

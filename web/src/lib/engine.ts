// The logged-in device: socket events into IndexedDB (then acked), sends, receipts, typing, presence.
import { photoChanged, photoCheckDue } from "./avatar";
import { Store, wipe } from "./db";
import { Api } from "./http";
import { makePoster } from "./poster";
import { newId } from "./ids";
import { CommandError, Socket } from "./socket";
import {
  applyMessage,
  applyReceipt,
  fromEvent,
  markedRead,
  newChat,
  preview,
  sortMessages,
  withMessage,
} from "./state";
import type { Attachment, Chat, ConnectionState, Session, StoredMessage } from "./types";

const TYPING_SEND_EVERY_MS = 3000;
/** Messages of the open chat read first, so it opens at once; the rest follow in the background. */
export const PAGE = 200;
const TYPING_SHOWN_MS = 5000;
/** Attachments at most this large are fetched before the message is acked (the server forgets them after). */
const AUTO_DOWNLOAD_BYTES = 16 * 1024 * 1024;

export interface Presence {
  state: string;
  lastSeen: string | null;
}

export interface Snapshot {
  me: string;
  myName: string;
  connection: ConnectionState;
  chats: Chat[];
  users: Record<string, string>;
  openChatId: string | null;
  /** The open chat's messages read so far: the newest, then (soon after opening) all. */
  messages: StoredMessage[];
  /** Stored messages of the open chat before `messages[0]` not read yet (drawn as placeholders). */
  earlierCount: number;
  /** Profile photos as object URLs by user id (this device's own too); null: none or hidden. */
  photos: Record<string, string | null>;
  typing: Record<string, string | undefined>;
  presence: Record<string, Presence>;
  media: Record<string, string>;
  upload: { fileName: string; fraction: number } | null;
  error: string | null;
}

export class Engine {
  private socket: Socket;
  private chain: Promise<void> = Promise.resolve();
  private listeners = new Set<() => void>();
  private chats = new Map<string, Chat>();
  private typingTimers = new Map<string, ReturnType<typeof setTimeout>>();
  private lastTypingSent = 0;
  private uploadAbort: AbortController | null = null;
  /** When each user's profile was last read (ms): photos are refreshed at most every few minutes. */
  private profileChecked = new Map<string, number>();
  snapshot: Snapshot;

  constructor(
    private readonly store: Store,
    readonly api: Api,
    session: Session,
    private readonly onLoggedOut: () => void,
  ) {
    this.snapshot = {
      me: session.userId,
      myName: "",
      connection: "connecting",
      chats: [],
      users: {},
      openChatId: null,
      messages: [],
      earlierCount: 0,
      photos: {},
      typing: {},
      presence: {},
      media: {},
      upload: null,
      error: null,
    };
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.socket = new Socket(`${scheme}//${location.host}/v1/ws`, {
      token: () => this.api.token,
      onEvent: (event, data, connection) => this.onEvent(event, { ...data, connection }),
      onState: (state) => this.set({ connection: state }),
      onReady: () => this.enqueue(() => this.afterReady()),
      onInvalidToken: () => this.api.refresh(),
      onRevoked: () => void this.forget(),
    });
  }

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getSnapshot = (): Snapshot => this.snapshot;

  private set(patch: Partial<Snapshot>): void {
    this.snapshot = { ...this.snapshot, ...patch };
    for (const listener of this.listeners) listener();
  }

  private publishChats(): void {
    this.set({ chats: [...this.chats.values()] });
  }

  async start(): Promise<void> {
    for (const chat of await this.store.chats()) this.chats.set(chat.chatId, chat);
    const users: Record<string, string> = {};
    for (const user of await this.store.users()) users[user.id] = user.name;
    const photos: Record<string, string | null> = {};
    for (const photo of await this.store.photos()) {
      photos[photo.userId] = photo.blob ? URL.createObjectURL(photo.blob) : null;
    }
    this.set({ users, photos });
    this.publishChats();
    window.addEventListener("offline", this.wentOffline);
    window.addEventListener("online", this.cameOnline);
    this.socket.start();
    void this.api
      .me()
      .then((me) => this.set({ myName: me.name }))
      .catch(() => undefined);
    void this.refreshProfile(this.snapshot.me).catch(() => undefined);
  }

  stop(): void {
    window.removeEventListener("offline", this.wentOffline);
    window.removeEventListener("online", this.cameOnline);
    this.socket.stop();
  }

  /** Take the connection back after another tab had it. */
  resume(): void {
    this.socket.stop();
    this.socket.start();
  }

  private wentOffline = () => {
    this.socket.drop();
    this.set({ connection: "offline" });
  };

  private cameOnline = () => this.socket.reconnectNow();

  /** Events are handled one at a time, in order, so acks follow storage. */
  private enqueue(task: () => Promise<void>): void {
    this.chain = this.chain.then(task).catch((error: unknown) => {
      console.error(error);
    });
  }

  private onEvent(event: string, data: Record<string, unknown>): void {
    if (event === "message") this.enqueue(() => this.onMessage(data));
    else if (event === "receipt") this.enqueue(() => this.onReceipt(data));
    else if (event === "typing") this.onTyping(data);
    else if (event === "presence") {
      const userId = String(data.userId);
      this.set({
        presence: {
          ...this.snapshot.presence,
          [userId]: { state: String(data.state), lastSeen: (data.lastSeen as string | null) ?? null },
        },
      });
    }
  }

  /** After the event is stored; an event of an older connection comes again, unacked. */
  private ack(data: Record<string, unknown>): void {
    if (typeof data.inboxSeq === "number" && typeof data.connection === "number") {
      this.socket.ackOn(data.connection, data.inboxSeq);
    }
  }

  private async afterReady(): Promise<void> {
    try {
      const answer = (await this.socket.request("getChats")) as { chats: Record<string, unknown>[] };
      for (const item of answer.chats) {
        const known = this.chats.get(String(item.chatId));
        if (!known) await this.learnChat(String(item.chatId), item);
        else if (known.name !== item.name || known.role !== item.role) {
          await this.saveChat({ ...known, name: String(item.name), role: String(item.role) });
        }
      }
    } catch (error) {
      if (!(error instanceof CommandError)) throw error;
    }
    for (const message of sortMessages(await this.store.pending())) void this.deliver(message);
    this.markOpenChatRead();
  }

  /** A chat this device has not seen: its members and names, from getChat and the users API. */
  private async learnChat(chatId: string, summary?: Record<string, unknown>): Promise<Chat> {
    const info = (await this.socket.request("getChat", { chatId })) as {
      kind: "direct" | "group";
      name: string;
      lastSeq: number;
      members: { userId: string; role: string; readSeq: number }[];
    };
    const me = info.members.find((m) => m.userId === this.snapshot.me);
    const chat = newChat({
      chatId,
      kind: info.kind,
      name: info.name,
      role: me?.role,
      lastSeq: Number(summary?.lastSeq ?? 0),
      readSeq: Number(summary?.readSeq ?? me?.readSeq ?? 0),
      members: info.members.map((m) => m.userId),
    });
    chat.admins = info.members.filter((m) => m.role === "admin").map((m) => m.userId);
    const existing = this.chats.get(chatId);
    const merged = existing
      ? { ...existing, members: chat.members, admins: chat.admins, name: chat.name, role: chat.role }
      : chat;
    await this.saveChat(merged);
    await Promise.all(chat.members.map((id) => this.learnUser(id)));
    return merged;
  }

  private async learnUser(id: string): Promise<void> {
    if (id in this.snapshot.users) return;
    try {
      await this.refreshProfile(id);
    } catch {
      // A profile we cannot read shows as "Someone"; the chat still works.
    }
  }

  /** Read a profile again: its name, and its photo when `photo.updatedAt` changed. */
  private async refreshProfile(id: string): Promise<void> {
    this.profileChecked.set(id, Date.now());
    const user = await this.api.user(id);
    if (id !== this.snapshot.me && this.snapshot.users[id] !== user.name) {
      await this.store.putUser({ id, name: user.name });
      this.set({ users: { ...this.snapshot.users, [id]: user.name } });
    }
    await this.syncPhoto(id, user.photo?.updatedAt ?? null);
  }

  /** The photo of `id` as of `updatedAt` (null: none), fetched (with the token) only if changed. */
  private async syncPhoto(id: string, updatedAt: string | null): Promise<void> {
    const stored = await this.store.photo(id);
    if (!photoChanged(stored, updatedAt) && id in this.snapshot.photos) return;
    let blob = stored && !photoChanged(stored, updatedAt) ? stored.blob : null;
    if (updatedAt !== null && (blob === null || photoChanged(stored, updatedAt))) {
      blob = await this.api.photoThumbnail(id);
    }
    await this.store.putPhoto({ userId: id, blob, updatedAt: blob ? updatedAt : null });
    const old = this.snapshot.photos[id];
    if (old) URL.revokeObjectURL(old);
    this.set({ photos: { ...this.snapshot.photos, [id]: blob ? URL.createObjectURL(blob) : null } });
  }

  /** Opening a chat reads its other member's profile again, at most every few minutes
   * (no protocol event says a profile changed). */
  private refreshPeer(chat: Chat | undefined): void {
    if (!chat || chat.kind !== "direct") return;
    for (const id of chat.members) {
      if (id === this.snapshot.me || !photoCheckDue(this.profileChecked.get(id), Date.now())) continue;
      void this.refreshProfile(id).catch(() => undefined);
    }
  }

  private async saveChat(chat: Chat): Promise<void> {
    await this.store.putChat(chat);
    this.chats.set(chat.chatId, chat);
    this.publishChats();
  }

  private async onMessage(data: Record<string, unknown>): Promise<void> {
    const message = fromEvent(data, this.snapshot.me);
    if (await this.store.hasMessage(message.key)) {
      this.ack(data); // seen before: the earlier ack was lost
      return;
    }
    let chat = this.chats.get(message.chatId);
    if (!chat || message.kind === "system") {
      try {
        chat = await this.learnChat(message.chatId);
      } catch (error) {
        // Removed from the group (chat_not_found) or offline: keep what we have.
        if (!(error instanceof CommandError)) throw error;
        chat = chat ?? newChat({ chatId: message.chatId, kind: "group" });
      }
    }
    if (message.senderId) await this.learnUser(message.senderId);
    const userId = message.system?.userId;
    if (typeof userId === "string") await this.learnUser(userId);
    for (const file of message.attachments) await this.fetchMedia(file);
    await this.store.putMessage(message);
    await this.saveChat(applyMessage(chat, message, this.snapshot.me));
    this.ack(data);
    if (message.chatId === this.snapshot.openChatId) {
      this.show(message); // openChat may have read it from the store meanwhile
      this.markOpenChatRead();
    }
    if (message.senderId) this.clearTyping(message.chatId);
    this.notify(message);
  }

  /** A system notification for a message from someone else while the tab is hidden. */
  private notify(message: StoredMessage): void {
    if (message.kind !== "text" || message.senderId === this.snapshot.me || !document.hidden) return;
    if (typeof Notification === "undefined" || Notification.permission !== "granted") return;
    const sender = (message.senderId && this.snapshot.users[message.senderId]) || "Pigeon";
    new Notification(sender, { body: preview(message), tag: message.chatId });
  }

  private async fetchMedia(file: Attachment): Promise<void> {
    if (file.size > AUTO_DOWNLOAD_BYTES || (await this.store.media(file.attachmentId))) return;
    try {
      await this.store.putMedia(file.attachmentId, await this.api.download(file.attachmentId));
    } catch {
      // Gone or not ours: the thumbnail and name still show.
    }
  }

  /** An object URL for a stored attachment, made once. */
  async mediaUrl(attachmentId: string): Promise<string | undefined> {
    const known = this.snapshot.media[attachmentId];
    if (known) return known;
    const blob = await this.store.media(attachmentId);
    if (!blob) return undefined;
    const url = URL.createObjectURL(blob);
    this.set({ media: { ...this.snapshot.media, [attachmentId]: url } });
    return url;
  }

  private async onReceipt(data: Record<string, unknown>): Promise<void> {
    const chat = this.chats.get(String(data.chatId));
    if (chat) {
      const receipt = {
        type: String(data.type),
        userId: String(data.userId),
        upToSeq: Number(data.upToSeq),
      };
      const updated = applyReceipt(chat, receipt, this.snapshot.me);
      if (updated !== chat) await this.saveChat(updated);
    }
    this.ack(data);
  }

  private onTyping(data: Record<string, unknown>): void {
    const chatId = String(data.chatId);
    if (data.state !== "composing") {
      this.clearTyping(chatId);
      return;
    }
    clearTimeout(this.typingTimers.get(chatId));
    this.typingTimers.set(chatId, setTimeout(() => this.clearTyping(chatId), TYPING_SHOWN_MS));
    this.set({ typing: { ...this.snapshot.typing, [chatId]: String(data.userId) } });
  }

  private clearTyping(chatId: string): void {
    clearTimeout(this.typingTimers.get(chatId));
    if (this.snapshot.typing[chatId]) this.set({ typing: { ...this.snapshot.typing, [chatId]: undefined } });
  }

  // --- what the person does ---

  async openChat(chatId: string | null): Promise<void> {
    this.set({ openChatId: chatId, messages: [], earlierCount: 0 });
    if (!chatId) return;
    const { messages, earlier: earlierCount } = await this.store.window(chatId, PAGE);
    if (this.snapshot.openChatId !== chatId) return;
    this.set({ messages, earlierCount });
    if (earlierCount > 0) void this.readEarlier(chatId, messages[0].order ?? 0);
    this.markOpenChatRead();
    const chat = this.chats.get(chatId);
    this.refreshPeer(chat);
    const peers = (chat?.members ?? []).filter((m) => m !== this.snapshot.me);
    if (peers.length > 0 && this.socket.ready) {
      try {
        const answer = (await this.socket.request("getPresence", { userIds: peers })) as {
          presence: { userId: string; state: string; lastSeen: string | null }[];
        };
        const presence = { ...this.snapshot.presence };
        for (const p of answer.presence) presence[p.userId] = { state: p.state, lastSeen: p.lastSeen };
        this.set({ presence });
      } catch {
        // Presence is a nicety: without it the header just shows no status.
      }
    }
  }

  /** The rest of the open chat, once its newest messages are on screen: one IndexedDB
   * request; the timeline drew them as placeholders of the same count meanwhile. */
  private async readEarlier(chatId: string, before: number): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, 50)); // after the first frames
    if (this.snapshot.openChatId !== chatId) return;
    const earlier = await this.store.allBefore(chatId, before);
    if (this.snapshot.openChatId !== chatId) return;
    this.set({ messages: [...earlier, ...this.snapshot.messages], earlierCount: 0 });
  }

  private markOpenChatRead(): void {
    const chat = this.snapshot.openChatId ? this.chats.get(this.snapshot.openChatId) : undefined;
    if (!chat || document.hidden || !this.socket.ready) return;
    const newest = this.snapshot.messages.reduce(
      (top, m) => (m.seq !== null && !m.own && m.senderId !== this.snapshot.me ? Math.max(top, m.seq) : top),
      0,
    );
    if (newest <= chat.readSeq && chat.unread === 0) return;
    const upToSeq = Math.max(newest, chat.readSeq);
    this.socket.request("markRead", { chatId: chat.chatId, upToSeq }).catch(() => undefined);
    void this.saveChat(markedRead(chat, upToSeq));
  }

  /** Called when the tab becomes visible again: what was shown meanwhile is now read. */
  visible(): void {
    this.markOpenChatRead();
  }

  async sendText(
    chatId: string,
    text: string,
    attachments: Attachment[] = [],
    replyTo?: string,
  ): Promise<void> {
    const clientMessageId = newId();
    const message: StoredMessage = {
      key: `local:${clientMessageId}`,
      chatId,
      messageId: null,
      clientMessageId,
      seq: null,
      kind: "text",
      senderId: this.snapshot.me,
      text,
      attachments,
      replyTo,
      createdAt: new Date().toISOString(),
      own: true,
      sent: false,
    };
    await this.store.putMessage(message); // kept before it leaves, so a reload sends it again
    this.show(message);
    const chat = this.chats.get(chatId);
    if (chat) await this.saveChat({ ...applyMessage(chat, message, this.snapshot.me) });
    await this.deliver(message);
  }

  private show(message: StoredMessage): void {
    if (message.chatId !== this.snapshot.openChatId) return;
    this.set({ messages: withMessage(this.snapshot.messages, message) });
  }

  /** Send (again) with the same clientMessageId: the server stores it once whatever happens. */
  private async deliver(message: StoredMessage): Promise<void> {
    if (!this.socket.ready) return; // sent after the next `ready`
    const data: Record<string, unknown> = {
      chatId: message.chatId,
      clientMessageId: message.clientMessageId,
      message: message.text,
    };
    if (message.attachments.length > 0) data.attachments = message.attachments.map((a) => a.attachmentId);
    if (message.replyTo) data.replyTo = message.replyTo;
    try {
      const answer = (await this.socket.request("sendMessage", data)) as {
        messageId: string;
        seq: number;
        createdAt: string;
      };
      const sent = { ...message, messageId: answer.messageId, seq: answer.seq, createdAt: answer.createdAt, sent: true };
      await this.store.putMessage(sent);
      this.show(sent);
      const chat = this.chats.get(message.chatId);
      if (chat) await this.saveChat(applyMessage(chat, sent, this.snapshot.me));
    } catch (error) {
      if (error instanceof CommandError && !["offline", "timeout", "unavailable"].includes(error.code)) {
        this.set({ error: error.message });
      }
    }
  }

  composing(chatId: string): void {
    const now = Date.now();
    if (now - this.lastTypingSent < TYPING_SEND_EVERY_MS) return;
    this.lastTypingSent = now;
    this.socket.send("typing", { chatId, state: "composing" });
  }

  async sendFile(chatId: string, file: File): Promise<void> {
    this.uploadAbort = new AbortController();
    const signal = this.uploadAbort.signal;
    this.set({ upload: { fileName: file.name, fraction: 0 }, error: null });
    try {
      // A video goes with the poster this device draws of it (the server makes none).
      const poster = file.type.startsWith("video/") ? await makePoster(file) : null;
      const metadata = (await this.api.upload(
        file,
        (fraction) => this.set({ upload: { fileName: file.name, fraction } }),
        signal,
        poster ?? undefined,
      )) as unknown as Attachment;
      await this.store.putMedia(metadata.attachmentId, file);
      await this.sendText(chatId, "", [metadata]);
    } catch (error) {
      this.set({ error: (error as Error).message });
    } finally {
      this.uploadAbort = null;
      this.set({ upload: null });
    }
  }

  cancelUpload(): void {
    this.uploadAbort?.abort();
  }

  async startChat(phone: string): Promise<string> {
    const { matches } = await this.api.lookup([phone]);
    if (matches.length === 0) throw new Error(`no_match:${phone}`);
    const answer = (await this.socket.request("createChat", { participants: [matches[0].userId] })) as {
      chatId: string;
    };
    await this.learnChat(answer.chatId);
    return answer.chatId;
  }

  async createGroup(name: string, phones: string[]): Promise<string> {
    const { matches } = await this.api.lookup(phones);
    const answer = (await this.socket.request("createChat", {
      participants: matches.map((m) => m.userId),
      name,
    })) as { chatId: string };
    await this.learnChat(answer.chatId);
    return answer.chatId;
  }

  async rename(chatId: string, name: string): Promise<void> {
    await this.socket.request("updateChat", { chatId, name });
    await this.learnChat(chatId);
  }

  async addMember(chatId: string, phone: string): Promise<void> {
    const { matches } = await this.api.lookup([phone]);
    if (matches.length === 0) throw new Error(`no_match:${phone}`);
    await this.socket.request("modifyChatParticipants", {
      chatId,
      userId: matches[0].userId,
      operation: "ADD",
    });
    await this.learnChat(chatId);
  }

  async makeAdmin(chatId: string, userId: string): Promise<void> {
    await this.socket.request("setRole", { chatId, userId, role: "admin" });
    await this.learnChat(chatId);
  }

  async removeMember(chatId: string, userId: string): Promise<void> {
    await this.socket.request("modifyChatParticipants", { chatId, userId, operation: "REMOVE" });
    await this.learnChat(chatId);
  }

  async setName(name: string): Promise<void> {
    await this.api.setName(name);
    this.set({ myName: name });
  }

  /** Upload an image and make it the profile photo; shown from the server's thumbnail. */
  async setPhoto(file: File): Promise<void> {
    const metadata = (await this.api.upload(file, () => undefined)) as unknown as Attachment;
    const photo = await this.api.setPhoto(metadata.attachmentId);
    await this.syncPhoto(this.snapshot.me, photo.updatedAt);
  }

  async removePhoto(): Promise<void> {
    await this.api.removePhoto();
    await this.syncPhoto(this.snapshot.me, null);
  }

  dismissError(): void {
    this.set({ error: null });
  }

  async logout(): Promise<void> {
    try {
      await this.api.logout();
    } catch {
      // Already revoked or offline: forget locally all the same.
    }
    await this.forget();
  }

  private async forget(): Promise<void> {
    this.stop();
    await wipe(this.store);
    this.onLoggedOut();
  }
}

// Pure rules of the client's state: ticks, unread counts, ordering. No I/O, so Vitest covers them.
import type { Attachment, Chat, Status, StoredMessage } from "./types";

/** A chat as first learned from getChats / getChat, before any message of ours arrived. */
export function newChat(data: {
  chatId: string;
  kind: "direct" | "group";
  name?: string;
  role?: string;
  lastSeq?: number;
  readSeq?: number;
  members?: string[];
}): Chat {
  return {
    chatId: data.chatId,
    kind: data.kind,
    name: data.name ?? "",
    role: data.role ?? "member",
    lastSeq: data.lastSeq ?? 0,
    readSeq: data.readSeq ?? 0,
    unread: 0,
    lastText: "",
    lastAt: "",
    members: data.members ?? [],
    delivered: {},
    read: {},
  };
}

/** The tick of one of our messages: read once every other member read it, and so on. */
export function messageStatus(message: StoredMessage, chat: Chat | undefined, me: string): Status {
  if (!message.sent || message.seq === null) return "pending";
  if (!chat) return "sent";
  const seq = message.seq;
  const others = chat.members.filter((m) => m !== me);
  const readers = others.length > 0 ? others : Object.keys(chat.read);
  const reached = (marks: Record<string, number>, user: string) => (marks[user] ?? 0) >= seq;
  if (readers.length > 0 && readers.every((u) => reached(chat.read, u))) return "read";
  const receivers = others.length > 0 ? others : Object.keys(chat.delivered);
  if (
    receivers.length > 0 &&
    receivers.every((u) => reached(chat.delivered, u) || reached(chat.read, u))
  ) {
    return "delivered";
  }
  return "sent";
}

/** The chat after a receipt: read implies delivered; our own reads (other devices) clear unread. */
export function applyReceipt(
  chat: Chat,
  receipt: { type: string; userId: string; upToSeq: number },
  me: string,
): Chat {
  if (receipt.userId === me) {
    if (receipt.type !== "read" || receipt.upToSeq <= chat.readSeq) return chat;
    return {
      ...chat,
      readSeq: receipt.upToSeq,
      unread: receipt.upToSeq >= chat.lastSeq ? 0 : chat.unread,
    };
  }
  const marks = receipt.type === "read" ? chat.read : chat.delivered;
  if ((marks[receipt.userId] ?? 0) >= receipt.upToSeq) return chat;
  const updated = { ...marks, [receipt.userId]: receipt.upToSeq };
  return receipt.type === "read" ? { ...chat, read: updated } : { ...chat, delivered: updated };
}

/** The chat after a message was stored (once: callers skip messages they already have). */
export function applyMessage(chat: Chat, message: StoredMessage, me: string): Chat {
  const seq = message.seq ?? chat.lastSeq;
  const incoming = message.kind === "text" && message.senderId !== me && !message.own;
  return {
    ...chat,
    lastSeq: Math.max(chat.lastSeq, seq),
    lastText: preview(message),
    lastAt: message.createdAt > chat.lastAt ? message.createdAt : chat.lastAt,
    unread: incoming && seq > chat.readSeq ? chat.unread + 1 : chat.unread,
  };
}

/** The chat once this device marked it read up to `upToSeq`. */
export function markedRead(chat: Chat, upToSeq: number): Chat {
  return { ...chat, readSeq: Math.max(chat.readSeq, upToSeq), unread: 0 };
}

export function preview(message: StoredMessage): string {
  if (message.text) return message.text.split("\n")[0].slice(0, 80);
  const file: Attachment | undefined = message.attachments[0];
  if (file) return file.fileName;
  return "";
}

/** Latest activity first; chats with no message yet last, newest id first. */
export function sortChats(chats: Chat[]): Chat[] {
  return [...chats].sort((a, b) => {
    if (a.lastAt !== b.lastAt) return a.lastAt < b.lastAt ? 1 : -1;
    return a.chatId < b.chatId ? 1 : -1;
  });
}

export function filterChats(chats: Chat[], query: string, title: (chat: Chat) => string): Chat[] {
  const needle = query.trim().toLowerCase();
  if (!needle) return chats;
  return chats.filter(
    (c) => title(c).toLowerCase().includes(needle) || c.lastText.toLowerCase().includes(needle),
  );
}

/** Messages in the order the protocol guarantees: by seq; unsent ones after, oldest first. */
export function sortMessages(messages: StoredMessage[]): StoredMessage[] {
  return [...messages].sort((a, b) => {
    if (a.seq !== null && b.seq !== null) return a.seq - b.seq;
    if (a.seq !== null) return -1;
    if (b.seq !== null) return 1;
    return a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : 0;
  });
}

/** The messages on screen with `message` in its place: replacing the copy with its key
 * (our own send once answered, or a message the chat's first page already read from
 * the store while its event was being stored), never shown twice. */
export function withMessage(messages: StoredMessage[], message: StoredMessage): StoredMessage[] {
  return sortMessages([...messages.filter((m) => m.key !== message.key), message]);
}

/** The message a `message` event describes, as this device stores it. */
export function fromEvent(data: Record<string, unknown>, me: string): StoredMessage {
  return {
    key: String(data.messageId),
    chatId: String(data.chatId),
    messageId: String(data.messageId),
    clientMessageId: null,
    seq: Number(data.seq),
    kind: data.kind === "system" ? "system" : "text",
    senderId: (data.senderId as string | null) ?? null,
    text: String(data.message ?? ""),
    attachments: (data.attachments as Attachment[] | undefined) ?? [],
    createdAt: String(data.createdAt),
    replyTo: data.replyTo as string | undefined,
    system: data.system as Record<string, unknown> | undefined,
    own: false,
    sent: data.senderId === me,
  };
}

/** Unsent messages sort after every seq (seqs stay far below this), oldest first. */
const UNSENT_BASE = 2 ** 50;

/** The position of a message in its chat's index: by seq, unsent ones last. */
export function orderOf(message: StoredMessage): number {
  return message.seq ?? UNSENT_BASE + Date.parse(message.createdAt);
}

/** A row's height before it is drawn (the timeline measures it then): close guesses keep
 * the scrollbar steady. Text wraps at about 48 characters in a bubble of 36rem at most. */
export function estimateHeight(message: StoredMessage): number {
  if (message.kind === "system") return 34;
  let height = 40; // padding, the time and ticks, the gap
  for (const line of message.text.split("\n")) {
    if (message.text) height += 20 * Math.max(1, Math.ceil(line.length / 48));
  }
  if (message.replyTo) height += 40;
  for (const file of message.attachments) {
    if (file.mimeType.startsWith("image/") && file.width && file.height) {
      height += Math.round((file.height * Math.min(file.width, 320)) / file.width);
    } else if (file.mimeType.startsWith("image/") || file.mimeType.startsWith("video/")) {
      height += 180;
    } else {
      height += 24;
    }
  }
  return height;
}

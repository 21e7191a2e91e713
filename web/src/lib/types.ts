// The shapes the app keeps: what the protocol sends, plus what only this device knows.

export type Status = "pending" | "sent" | "delivered" | "read";
export type ConnectionState = "connecting" | "catching-up" | "online" | "offline" | "elsewhere";

export interface Attachment {
  attachmentId: string;
  mimeType: string;
  size: number;
  fileName: string;
  width?: number | null;
  height?: number | null;
  thumbnail?: string | null;
}

/** One message as this device stores it. `key` is the messageId, or `local:<clientMessageId>` for our own sends. */
export interface StoredMessage {
  key: string;
  chatId: string;
  messageId: string | null;
  clientMessageId: string | null;
  seq: number | null;
  kind: "text" | "system";
  senderId: string | null;
  text: string;
  attachments: Attachment[];
  createdAt: string;
  replyTo?: string;
  system?: Record<string, unknown>;
  /** Sent from this device: its ticks are shown. */
  own: boolean;
  /** The server answered the send (it is committed). */
  sent: boolean;
  /** Position in the chat for the index: the seq, or after every seq while unsent. */
  order?: number;
}

export interface Chat {
  chatId: string;
  kind: "direct" | "group";
  name: string;
  role: string;
  lastSeq: number;
  readSeq: number;
  unread: number;
  lastText: string;
  lastAt: string;
  members: string[];
  /** The members who are admins (groups). */
  admins?: string[];
  /** Highest seq each other member's devices acked (delivered) or marked read. */
  delivered: Record<string, number>;
  read: Record<string, number>;
}

export interface Session {
  userId: string;
  deviceId: string;
  accessToken: string;
  refreshToken: string;
}

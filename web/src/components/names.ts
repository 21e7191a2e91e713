// How people and chats are named on screen.
import type { Snapshot } from "../lib/engine";
import type { Chat } from "../lib/types";
import { strings } from "../strings";

export function userName(snap: Snapshot, userId: string | null | undefined): string {
  if (!userId) return strings.someone;
  if (userId === snap.me) return strings.you;
  return snap.users[userId] || strings.someone;
}

export function peerOf(snap: Snapshot, chat: Chat): string | undefined {
  return chat.kind === "direct" ? chat.members.find((m) => m !== snap.me) : undefined;
}

export function chatTitle(snap: Snapshot, chat: Chat): string {
  if (chat.kind === "group") return chat.name || strings.newGroup;
  return userName(snap, peerOf(snap, chat));
}

export function formatTime(iso: string): string {
  if (!iso) return "";
  const date = new Date(iso);
  const today = new Date();
  return date.toDateString() === today.toDateString()
    ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : date.toLocaleDateString();
}

/** The photo shown for a chat: the other person's in a 1:1 chat (groups have none). */
export function chatPhoto(snap: Snapshot, chat: Chat): string | null {
  const peer = peerOf(snap, chat);
  return peer ? (snap.photos[peer] ?? null) : null;
}

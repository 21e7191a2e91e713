// One chat: header with presence or typing, the timeline, the composer and attachments.
import { useRef, useState, type FormEvent, type KeyboardEvent } from "react";
import type { Engine, Snapshot } from "../lib/engine";
import { preview } from "../lib/state";
import type { Chat, StoredMessage } from "../lib/types";
import { strings } from "../strings";
import { Avatar } from "./Avatar";
import { GroupPanel } from "./GroupPanel";
import { ClipIcon } from "./icons";
import { chatPhoto, chatTitle, formatTime, peerOf, userName } from "./names";
import { Timeline } from "./Timeline";

interface Props {
  engine: Engine;
  snap: Snapshot;
  chat: Chat;
}

export function ChatView({ engine, snap, chat }: Props) {
  const [draft, setDraft] = useState("");
  const [dragging, setDragging] = useState(false);
  const [replyTo, setReplyTo] = useState<StoredMessage | null>(null);
  const composer = useRef<HTMLTextAreaElement>(null);
  const peer = peerOf(snap, chat);
  const presence = peer ? snap.presence[peer] : undefined;
  const typist = snap.typing[chat.chatId];
  const newest = snap.messages.at(-1);
  const announced = newest && !newest.own && newest.senderId !== snap.me && newest.kind === "text" ? newest : null;

  function send(event?: FormEvent) {
    event?.preventDefault();
    const text = draft;
    if (!text.trim()) return;
    setDraft("");
    setReplyTo(null);
    void engine.sendText(chat.chatId, text, [], replyTo?.messageId ?? undefined);
  }

  /** Files dropped on the chat or pasted into the composer go like picked ones. */
  function attach(files: FileList) {
    for (const file of Array.from(files)) void engine.sendFile(chat.chatId, file);
  }

  function onKeyDown(event: KeyboardEvent<HTMLTextAreaElement>) {
    if (event.key === "Enter" && !event.shiftKey && !event.nativeEvent.isComposing) {
      event.preventDefault();
      send();
    }
  }

  const status = typist
    ? chat.kind === "group"
      ? strings.someoneTyping(userName(snap, typist))
      : strings.typing
    : presence
      ? presence.state === "online"
        ? strings.online
        : presence.lastSeen
          ? strings.lastSeen(formatTime(presence.lastSeen))
          : ""
      : "";

  return (
    <main
      className={dragging ? "chat dragging" : "chat"}
      aria-labelledby="chat-title"
      onDragOver={(e) => {
        if (!e.dataTransfer.types.includes("Files")) return;
        e.preventDefault();
        setDragging(true);
      }}
      onDragLeave={() => setDragging(false)}
      onDrop={(e) => {
        e.preventDefault();
        setDragging(false);
        attach(e.dataTransfer.files);
      }}
    >
      <header className="chat-header">
        <button type="button" className="back" onClick={() => void engine.openChat(null)}>
          <span aria-hidden="true">←</span>
          <span className="visually-hidden">{strings.back}</span>
        </button>
        <span data-testid="chat-avatar">
          <Avatar name={chatTitle(snap, chat)} photo={chatPhoto(snap, chat)} />
        </span>
        <div>
          <h2 id="chat-title" data-testid="chat-title">
            {chatTitle(snap, chat)}
          </h2>
          {typist ? (
            <p className="subtitle" data-testid="typing">
              {status}
            </p>
          ) : (
            <p className="subtitle" data-testid="presence" data-state={presence?.state ?? "unknown"}>
              {status}
            </p>
          )}
        </div>
      </header>
      {chat.kind === "group" && <GroupPanel engine={engine} snap={snap} chat={chat} />}
      <Timeline
        engine={engine}
        snap={snap}
        chat={chat}
        onReply={(original) => {
          setReplyTo(original);
          composer.current?.focus();
        }}
      />
      {/* The list draws only what is on screen, so new messages are announced here. */}
      <p className="visually-hidden" aria-live="polite">
        {announced ? `${userName(snap, announced.senderId)}: ${preview(announced)}` : ""}
      </p>
      {snap.upload && (
        <div className="upload">
          <label htmlFor="upload-progress">{snap.upload.fileName}</label>
          <progress id="upload-progress" data-testid="upload-progress" max={1} value={snap.upload.fraction} />
          <button type="button" onClick={() => engine.cancelUpload()}>
            {strings.cancel}
          </button>
        </div>
      )}
      {replyTo && (
        <div className="replying" data-testid="replying">
          <span>
            {strings.replyingTo} {userName(snap, replyTo.senderId)}: {preview(replyTo)}
          </span>
          <button type="button" onClick={() => setReplyTo(null)}>
            {strings.cancel}
          </button>
        </div>
      )}
      <form className="composer" onSubmit={send}>
        <label className="attach">
          <ClipIcon />
          <span className="visually-hidden">{strings.attach}</span>
          <input
            type="file"
            data-testid="attach-input"
            onChange={(e) => {
              if (e.target.files) attach(e.target.files);
              e.target.value = "";
            }}
          />
        </label>
        <label htmlFor="composer" className="visually-hidden">
          {strings.composer}
        </label>
        <textarea
          id="composer"
          ref={composer}
          data-testid="composer"
          rows={1}
          placeholder={strings.composer}
          value={draft}
          onChange={(e) => {
            setDraft(e.target.value);
            engine.composing(chat.chatId);
          }}
          onKeyDown={onKeyDown}
          onPaste={(e) => {
            if (e.clipboardData.files.length === 0) return; // text pastes as text
            e.preventDefault();
            attach(e.clipboardData.files);
          }}
        />
        <button type="submit" data-testid="send">
          {strings.send}
        </button>
      </form>
    </main>
  );
}

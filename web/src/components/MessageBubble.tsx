// One message. Text is rendered as text (React escapes it), never as HTML.
import { useEffect, useRef, useState } from "react";
import type { Engine, Snapshot } from "../lib/engine";
import type { Attachment, Status, StoredMessage } from "../lib/types";
import { strings } from "../strings";
import { preview } from "../lib/state";
import { ClockIcon, PlayIcon } from "./icons";
import { formatTime, userName } from "./names";

interface Props {
  engine: Engine;
  snap: Snapshot;
  message: StoredMessage;
  status: Status;
  onReply(message: StoredMessage): void;
}

const TICKS: Record<Status, string> = { pending: "", sent: "✓", delivered: "✓✓", read: "✓✓" };

export function MessageBubble({ engine, snap, message, status, onReply }: Props) {
  if (message.kind === "system") {
    return (
      <div className="system" data-testid="message" data-message-id={message.messageId ?? message.key}>
        {systemText(snap, message)}
      </div>
    );
  }
  const mine = message.own || message.senderId === snap.me;
  return (
    <div
      className={mine ? "bubble mine" : "bubble"}
      data-testid="message"
      data-message-id={message.messageId ?? message.key}
      data-status={mine ? status : undefined}
    >
      {!mine && <span className="sender">{userName(snap, message.senderId)}</span>}
      {message.attachments.map((file) => (
        <AttachmentView key={file.attachmentId} engine={engine} snap={snap} file={file} />
      ))}
      {message.replyTo && <Quote snap={snap} messageId={message.replyTo} />}
      {message.text && <p className="text">{message.text}</p>}
      <span className="meta">
        {message.messageId && (
          <button type="button" className="reply" data-testid="reply" onClick={() => onReply(message)}>
            {strings.reply}
          </button>
        )}
        <time dateTime={message.createdAt}>{formatTime(message.createdAt)}</time>
        {mine && (
          <span className={`tick ${status}`} aria-label={strings.statusLabel[status]}>
            {status === "pending" ? <ClockIcon /> : TICKS[status]}
          </span>
        )}
      </span>
    </div>
  );
}

// A viewer's buttons: close, and download once the file is on this device.
function ViewerActions({ url, fileName }: { url: string | undefined; fileName: string }) {
  return (
    <form method="dialog">
      <button type="submit" autoFocus data-testid="viewer-close">
        {strings.close}
      </button>
      {url && (
        <a href={url} download={fileName} data-testid="viewer-download">
          {strings.download}
        </a>
      )}
    </form>
  );
}

function AttachmentView({ engine, snap, file }: { engine: Engine; snap: Snapshot; file: Attachment }) {
  const url = snap.media[file.attachmentId];
  const [missing, setMissing] = useState(false);
  const [playing, setPlaying] = useState(false);
  const viewer = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    if (!url) void engine.mediaUrl(file.attachmentId).then((found) => setMissing(!found));
  }, [engine, url, file.attachmentId]);
  if (file.mimeType.startsWith("image/")) {
    const src = url ?? (file.thumbnail ? `data:image/jpeg;base64,${file.thumbnail}` : undefined);
    return src ? (
      <>
        <button type="button" className="image-button" onClick={() => viewer.current?.showModal()}>
          <img className="image" data-testid="message-image" data-attachment-id={file.attachmentId} src={src} alt={file.fileName} width={file.width ?? undefined} height={file.height ?? undefined} />
        </button>
        <dialog ref={viewer} className="viewer" data-testid="image-viewer" aria-label={file.fileName}>
          <img src={src} alt={file.fileName} />
          <ViewerActions url={url} fileName={file.fileName} />
        </dialog>
      </>
    ) : (
      <span>{file.fileName}</span>
    );
  }
  if (file.mimeType.startsWith("video/") && file.thumbnail) {
    // The poster its sender drew; the player opens in a viewer, as on WhatsApp.
    return (
      <>
        <button
          type="button"
          className="video-poster"
          data-testid="message-video-poster"
          data-attachment-id={file.attachmentId}
          aria-label={strings.playVideo(file.fileName)}
          onClick={() => {
            setPlaying(true);
            viewer.current?.showModal();
          }}
        >
          <img className="image" src={`data:image/jpeg;base64,${file.thumbnail}`} alt="" />
          <span className="play" aria-hidden="true">
            <PlayIcon />
          </span>
        </button>
        <dialog
          ref={viewer}
          className="viewer"
          data-testid="video-viewer"
          aria-label={file.fileName}
          onClose={() => setPlaying(false)}
        >
          {playing &&
            (url ? (
              <video data-testid="message-video" src={url} controls autoPlay aria-label={file.fileName} />
            ) : (
              <p>{strings.notOnDevice(file.fileName)}</p>
            ))}
          <ViewerActions url={url} fileName={file.fileName} />
        </dialog>
      </>
    );
  }
  if (file.mimeType.startsWith("video/") && url) {
    return (
      <video className="image" data-testid="message-video" src={url} controls preload="metadata" aria-label={file.fileName} />
    );
  }
  return url ? (
    <a href={url} download={file.fileName} data-testid="message-file" data-attachment-id={file.attachmentId}>
      {strings.download}: {file.fileName}
    </a>
  ) : (
    <span data-testid="message-file">{missing ? file.fileName : file.fileName}</span>
  );
}

function systemText(snap: Snapshot, message: StoredMessage): string {
  const s = message.system ?? {};
  const who = userName(snap, s.actorId as string | null);
  const whom = userName(snap, s.userId as string | null);
  switch (s.action) {
    case "created":
      return strings.groupCreated(who, String(s.name ?? ""));
    case "added":
      return strings.memberAdded(who, whom);
    case "removed":
      return strings.memberRemoved(who, whom);
    case "left":
      return strings.memberLeft(whom);
    case "renamed":
      return strings.renamed(who, String(s.name ?? ""));
    case "role":
      return s.userId === snap.me
        ? strings.yourRoleChanged(String(s.role ?? ""))
        : strings.roleChanged(whom, String(s.role ?? ""));
    default:
      return "";
  }
}

/** The message answered, as far as this device has it (the server does not check replyTo). */
function Quote({ snap, messageId }: { snap: Snapshot; messageId: string }) {
  const original = snap.messages.find((m) => m.messageId === messageId);
  return (
    <blockquote className="quote" data-testid="quote">
      {original ? (
        <>
          <span className="sender">{userName(snap, original.senderId)}</span>
          {preview(original)}
        </>
      ) : (
        strings.earlierMessage
      )}
    </blockquote>
  );
}

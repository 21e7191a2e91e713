// The logged-in screen: chat list beside the open chat (one at a time on a phone).
import { useEffect, useSyncExternalStore } from "react";
import type { Engine } from "../lib/engine";
import { strings } from "../strings";
import { ChatList } from "./ChatList";
import { ChatView } from "./ChatView";

export function Main({ engine }: { engine: Engine }) {
  const snap = useSyncExternalStore(engine.subscribe, engine.getSnapshot);
  const unread = snap.chats.reduce((sum, c) => sum + c.unread, 0);

  useEffect(() => {
    document.title = unread > 0 ? `(${unread}) ${strings.appName}` : strings.appName;
  }, [unread]);

  const open = snap.chats.find((c) => c.chatId === snap.openChatId) ?? null;
  const banner =
    snap.connection === "online"
      ? ""
      : snap.connection === "offline"
        ? strings.offline
        : snap.connection === "catching-up"
          ? strings.catchingUp
          : strings.connecting;

  return (
    <div className={open ? "layout chat-open" : "layout"}>
      <div
        className={banner ? "banner" : "banner hidden"}
        data-testid="connection-status"
        data-state={snap.connection}
        role="status"
        aria-live="polite"
      >
        {banner}
      </div>
      <ChatList engine={engine} snap={snap} />
      {open ? (
        <ChatView key={open.chatId} engine={engine} snap={snap} chat={open} />
      ) : (
        <main className="empty-pane">
          <p>{strings.noChatOpen}</p>
        </main>
      )}
      {snap.error && (
        <div role="alert" className="toast">
          {strings.error(snap.error)}
          <button type="button" onClick={() => engine.dismissError()}>
            ×<span className="visually-hidden">{strings.cancel}</span>
          </button>
        </div>
      )}
    </div>
  );
}

// Chats by latest activity, search, new chat by phone, new group, logout.
import { useState, type FormEvent } from "react";
import type { Engine, Snapshot } from "../lib/engine";
import { filterChats, sortChats } from "../lib/state";
import { strings } from "../strings";
import { Avatar } from "./Avatar";
import { chatPhoto, chatTitle, formatTime } from "./names";
import { ProfilePanel } from "./ProfilePanel";

type Form = "none" | "chat" | "group";

export function ChatList({ engine, snap }: { engine: Engine; snap: Snapshot }) {
  const [query, setQuery] = useState("");
  const [form, setForm] = useState<Form>("none");
  const [phone, setPhone] = useState("");
  const [groupName, setGroupName] = useState("");
  const [error, setError] = useState<string | null>(null);
  // Permission is asked only on a click, never on load.
  const [canAsk, setCanAsk] = useState(
    () => typeof Notification !== "undefined" && Notification.permission === "default",
  );
  const chats = filterChats(sortChats(snap.chats), query, (c) => chatTitle(snap, c));

  async function run(task: () => Promise<string>) {
    setError(null);
    try {
      const chatId = await task();
      setForm("none");
      setPhone("");
      setGroupName("");
      await engine.openChat(chatId);
    } catch (caught) {
      const message = (caught as Error).message;
      setError(message.startsWith("no_match:") ? strings.notFoundPhone(message.slice(9)) : message);
    }
  }

  const startChat = (event: FormEvent) => {
    event.preventDefault();
    void run(() => engine.startChat(phone.trim()));
  };

  const createGroup = (event: FormEvent) => {
    event.preventDefault();
    const phones = phone.split(",").map((p) => p.trim()).filter(Boolean);
    void run(() => engine.createGroup(groupName.trim(), phones));
  };

  return (
    <nav className="sidebar" aria-label={strings.chats}>
      <header className="sidebar-header">
        <ProfilePanel engine={engine} snap={snap} />
        <h1>{strings.chats}</h1>
        <button type="button" data-testid="new-chat" onClick={() => setForm(form === "chat" ? "none" : "chat")}>
          {strings.newChat}
        </button>
        <button type="button" data-testid="new-group" onClick={() => setForm(form === "group" ? "none" : "group")}>
          {strings.newGroup}
        </button>
        {canAsk && (
          <button
            type="button"
            data-testid="enable-notifications"
            onClick={() => void Notification.requestPermission().then(() => setCanAsk(false))}
          >
            {strings.enableNotifications}
          </button>
        )}
        <button type="button" data-testid="logout" onClick={() => void engine.logout()}>
          {strings.logout}
        </button>
      </header>
      {form === "chat" && (
        <form className="side-form" onSubmit={startChat}>
          <label htmlFor="new-chat-phone">{strings.newChatPhone}</label>
          <input id="new-chat-phone" data-testid="new-chat-phone" type="tel" required value={phone} onChange={(e) => setPhone(e.target.value)} />
          <button type="submit" data-testid="start-chat">
            {strings.startChat}
          </button>
        </form>
      )}
      {form === "group" && (
        <form className="side-form" onSubmit={createGroup}>
          <label htmlFor="group-name">{strings.groupName}</label>
          <input id="group-name" data-testid="group-name" required maxLength={100} value={groupName} onChange={(e) => setGroupName(e.target.value)} />
          <label htmlFor="group-member-phone">{strings.groupMemberPhones}</label>
          <input id="group-member-phone" data-testid="group-member-phone" required value={phone} onChange={(e) => setPhone(e.target.value)} />
          <button type="submit" data-testid="create-group">
            {strings.createGroup}
          </button>
        </form>
      )}
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
      <label htmlFor="chat-search" className="visually-hidden">
        {strings.searchChats}
      </label>
      <input
        id="chat-search"
        data-testid="chat-search"
        type="search"
        placeholder={strings.searchChats}
        value={query}
        onChange={(e) => setQuery(e.target.value)}
      />
      <ul className="chat-list" data-testid="chat-list">
        {chats.length === 0 && <li className="muted">{strings.noChats}</li>}
        {chats.map((chat) => (
          <li key={chat.chatId}>
            <button
              type="button"
              className={chat.chatId === snap.openChatId ? "chat-item selected" : "chat-item"}
              data-testid="chat-item"
              data-chat-id={chat.chatId}
              aria-current={chat.chatId === snap.openChatId ? "true" : undefined}
              onClick={() => void engine.openChat(chat.chatId)}
            >
              <Avatar name={chatTitle(snap, chat)} photo={chatPhoto(snap, chat)} />
              <span className="chat-item-text">
                <span className="chat-item-title">{chatTitle(snap, chat)}</span>
                <span className="chat-item-last" data-testid="chat-last">
                  {chat.lastText}
                </span>
              </span>
              <span className="chat-item-meta">
                <span className="chat-item-time">{formatTime(chat.lastAt)}</span>
                {chat.unread > 0 && (
                  <span className="unread" data-testid="unread" aria-label={strings.unread(chat.unread)}>
                    {chat.unread}
                  </span>
                )}
              </span>
            </button>
          </li>
        ))}
      </ul>
    </nav>
  );
}

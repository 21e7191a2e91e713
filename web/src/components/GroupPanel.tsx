// A group's members; admins rename it, add by phone and remove members.
import { useState, type FormEvent } from "react";
import type { Engine, Snapshot } from "../lib/engine";
import type { Chat } from "../lib/types";
import { strings } from "../strings";
import { userName } from "./names";

export function GroupPanel({ engine, snap, chat }: { engine: Engine; snap: Snapshot; chat: Chat }) {
  const [name, setName] = useState("");
  const [phone, setPhone] = useState("");
  const [error, setError] = useState<string | null>(null);
  const admin = chat.role === "admin";

  async function run(task: () => Promise<void>) {
    setError(null);
    try {
      await task();
    } catch (caught) {
      const message = (caught as Error).message;
      setError(message.startsWith("no_match:") ? strings.notFoundPhone(message.slice(9)) : message);
    }
  }

  const rename = (event: FormEvent) => {
    event.preventDefault();
    void run(async () => {
      await engine.rename(chat.chatId, name.trim());
      setName("");
    });
  };

  const add = (event: FormEvent) => {
    event.preventDefault();
    void run(async () => {
      await engine.addMember(chat.chatId, phone.trim());
      setPhone("");
    });
  };

  return (
    <details className="group-panel">
      <summary>
        {strings.members} ({chat.members.length})
      </summary>
      <ul>
        {chat.members.map((id) => (
          <li key={id} data-testid="group-member" data-user-id={id}>
            <span>
              {userName(snap, id)}
              {chat.admins?.includes(id) && <span className="muted-label"> · {strings.admin}</span>}
            </span>
            {admin && id !== snap.me && !chat.admins?.includes(id) && (
              <button type="button" data-testid="make-admin" onClick={() => void run(() => engine.makeAdmin(chat.chatId, id))}>
                {strings.makeAdmin}
              </button>
            )}
            {admin && id !== snap.me && (
              <button type="button" data-testid="remove-member" onClick={() => void run(() => engine.removeMember(chat.chatId, id))}>
                {strings.removeMember}
              </button>
            )}
          </li>
        ))}
      </ul>
      {admin && (
        <>
          <form onSubmit={rename}>
            <label htmlFor="rename-group">{strings.groupName}</label>
            <input id="rename-group" data-testid="rename-group" required maxLength={100} value={name} onChange={(e) => setName(e.target.value)} />
            <button type="submit">{strings.rename}</button>
          </form>
          <form onSubmit={add}>
            <label htmlFor="add-member">{strings.newChatPhone}</label>
            <input id="add-member" data-testid="add-member-phone" type="tel" required value={phone} onChange={(e) => setPhone(e.target.value)} />
            <button type="submit" data-testid="add-member">
              {strings.addMember}
            </button>
          </form>
        </>
      )}
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
    </details>
  );
}

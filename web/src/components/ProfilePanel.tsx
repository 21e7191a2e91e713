// This device's person: their photo (set, change, remove) and name, from the chat list header.
import { useRef, useState } from "react";
import type { Engine, Snapshot } from "../lib/engine";
import { strings } from "../strings";
import { Avatar } from "./Avatar";

export function ProfilePanel({ engine, snap }: { engine: Engine; snap: Snapshot }) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const photo = snap.photos[snap.me] ?? null;

  async function run(task: () => Promise<void>) {
    setBusy(true);
    setError(null);
    try {
      await task();
    } catch (caught) {
      setError((caught as Error).message);
    } finally {
      setBusy(false);
    }
  }

  return (
    <>
      <button
        type="button"
        className="profile-button"
        data-testid="open-profile"
        aria-label={strings.profile}
        onClick={() => dialog.current?.showModal()}
      >
        <Avatar name={snap.myName || strings.you} photo={photo} />
      </button>
      <dialog ref={dialog} className="profile-panel" data-testid="profile-panel" aria-labelledby="profile-title">
        <h2 id="profile-title">{strings.profile}</h2>
        <Avatar name={snap.myName || strings.you} photo={photo} size="large" />
        <p className="profile-name">{snap.myName}</p>
        <label className="button-like">
          {photo ? strings.changePhoto : strings.addPhoto}
          <input
            type="file"
            accept="image/*"
            className="visually-hidden"
            data-testid="profile-photo-input"
            disabled={busy}
            onChange={(e) => {
              const file = e.target.files?.[0];
              e.target.value = "";
              if (file) void run(() => engine.setPhoto(file));
            }}
          />
        </label>
        {photo && (
          <button type="button" data-testid="remove-photo" disabled={busy} onClick={() => void run(() => engine.removePhoto())}>
            {strings.removePhoto}
          </button>
        )}
        {error && (
          <p role="alert" className="error">
            {strings.error(error)}
          </p>
        )}
        <form method="dialog">
          <button type="submit">{strings.close}</button>
        </form>
      </dialog>
    </>
  );
}

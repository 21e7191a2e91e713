// Phone, then the SMS code, then (for a new account) a name.
import { useEffect, useState, type FormEvent } from "react";
import { ApiError, requestCode, verify } from "../lib/http";
import type { Session } from "../lib/types";
import { strings } from "../strings";

interface Props {
  askName: boolean;
  onSession(session: Session, newUser: boolean): Promise<void>;
  /** The name, and the photo picked (if any) to set after it. */
  onName(name: string, photo: File | null): Promise<void>;
}

export function Login({ askName, onSession, onName }: Props) {
  const [phone, setPhone] = useState("");
  const [sentTo, setSentTo] = useState<string | null>(null);
  const [outbox, setOutbox] = useState<string | null>(null);
  const [code, setCode] = useState("");
  const [name, setName] = useState("");
  const [photo, setPhoto] = useState<File | null>(null);
  const [preview, setPreview] = useState<string | null>(null);

  useEffect(() => {
    if (!photo) return;
    const url = URL.createObjectURL(photo);
    setPreview(url);
    return () => URL.revokeObjectURL(url);
  }, [photo]);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function run(task: () => Promise<void>) {
    setBusy(true);
    setError(null);
    try {
      await task();
    } catch (caught) {
      setError(caught instanceof ApiError ? caught.message : String(caught));
    } finally {
      setBusy(false);
    }
  }

  const submitPhone = (event: FormEvent) => {
    event.preventDefault();
    void run(async () => {
      const sent = await requestCode(phone.trim());
      setSentTo(sent.phone);
      setOutbox(sent.outbox ?? null);
    });
  };

  const submitCode = (event: FormEvent) => {
    event.preventDefault();
    void run(async () => {
      const session = await verify(sentTo ?? phone.trim(), code.trim());
      const { userId, deviceId, accessToken, refreshToken } = session;
      await onSession({ userId, deviceId, accessToken, refreshToken }, session.newUser);
    });
  };

  const submitName = (event: FormEvent) => {
    event.preventDefault();
    void run(() => onName(name.trim(), photo));
  };

  return (
    <main className="login">
      <h1>{askName ? strings.profileTitle : strings.loginTitle}</h1>
      {askName ? (
        <form onSubmit={submitName}>
          <label htmlFor="profile-name">{strings.profileNameLabel}</label>
          <input
            id="profile-name"
            data-testid="profile-name"
            value={name}
            maxLength={100}
            autoFocus
            required
            onChange={(e) => setName(e.target.value)}
          />
          <div className="photo-pick">
            {photo && preview ? (
              <img className="avatar large" src={preview} alt={strings.photoChosen(photo.name)} data-testid="profile-photo-preview" />
            ) : (
              <span className="avatar large" aria-hidden="true">
                {name.trim().slice(0, 1).toUpperCase() || "?"}
              </span>
            )}
            <label className="button-like">
              {photo ? strings.changePhoto : strings.addPhoto}
              <input
                type="file"
                accept="image/*"
                className="visually-hidden"
                data-testid="profile-photo-input"
                onChange={(e) => setPhoto(e.target.files?.[0] ?? null)}
              />
            </label>
          </div>
          <button type="submit" data-testid="save-profile" disabled={busy}>
            {strings.saveProfile}
          </button>
        </form>
      ) : sentTo === null ? (
        <form onSubmit={submitPhone}>
          <label htmlFor="phone">{strings.phoneLabel}</label>
          <input
            id="phone"
            data-testid="phone-input"
            type="tel"
            autoComplete="tel"
            value={phone}
            autoFocus
            required
            onChange={(e) => setPhone(e.target.value)}
          />
          <button type="submit" data-testid="request-code" disabled={busy}>
            {strings.requestCode}
          </button>
        </form>
      ) : (
        <form onSubmit={submitCode}>
          <p>{strings.codeSentTo(sentTo)}</p>
          {outbox && <p data-testid="code-hint">{strings.codeInOutbox(outbox)}</p>}
          <label htmlFor="code">{strings.codeLabel}</label>
          <input
            id="code"
            data-testid="code-input"
            inputMode="numeric"
            autoComplete="one-time-code"
            pattern="[0-9]{6}"
            value={code}
            autoFocus
            required
            onChange={(e) => setCode(e.target.value)}
          />
          <button type="submit" data-testid="verify-code" disabled={busy}>
            {strings.verifyCode}
          </button>
        </form>
      )}
      {error && (
        <p role="alert" className="error">
          {strings.error(error)}
        </p>
      )}
    </main>
  );
}

// Picks the screen: login, or the chats of the logged-in device; one active tab per profile.
import { useEffect, useState } from "react";
import { Store } from "../lib/db";
import { newId } from "../lib/ids";
import { Engine } from "../lib/engine";
import { Api } from "../lib/http";
import type { Session } from "../lib/types";
import { strings } from "../strings";
import { Login } from "./Login";
import { Main } from "./Main";

const TAB_CHANNEL = "pigeon-tabs";
/** This tab, so it ignores its own "active" (a page's channels hear each other). */
const TAB_ID = newId();

export function App() {
  const [store, setStore] = useState<Store | null>(null);
  const [engine, setEngine] = useState<Engine | null>(null);
  const [needsName, setNeedsName] = useState(false);
  const [elsewhere, setElsewhere] = useState(false);
  const [loaded, setLoaded] = useState(false);

  useEffect(() => {
    let cancelled = false;
    void Store.open().then(async (opened) => {
      if (cancelled) return;
      setStore(opened);
      const session = await opened.session();
      if (session) setEngine(makeEngine(opened, session));
      setLoaded(true);
    });
    return () => {
      cancelled = true;
    };
  }, []);

  function makeEngine(opened: Store, session: Session): Engine {
    const api = new Api(session, (fresh) => opened.saveSession(fresh));
    return new Engine(opened, api, session, () => location.reload());
  }

  // The newest tab takes over, as WhatsApp Web does; the others offer "Use here".
  useEffect(() => {
    if (!engine) return;
    const channel = new BroadcastChannel(TAB_CHANNEL);
    channel.onmessage = (event) => {
      if (event.data?.active && event.data.tab !== TAB_ID) {
        engine.stop();
        setElsewhere(true);
      }
    };
    channel.postMessage({ active: true, tab: TAB_ID });
    void engine.start();
    const onVisible = () => !document.hidden && engine.visible();
    document.addEventListener("visibilitychange", onVisible);
    return () => {
      document.removeEventListener("visibilitychange", onVisible);
      channel.close();
      engine.stop();
    };
  }, [engine]);

  function useHere() {
    const channel = new BroadcastChannel(TAB_CHANNEL);
    channel.postMessage({ active: true, tab: TAB_ID });
    channel.close();
    setElsewhere(false);
    engine?.resume();
  }

  if (!loaded || !store) return null;
  if (elsewhere) {
    return (
      <main className="centered">
        <p>{strings.otherTab}</p>
        <button type="button" onClick={useHere}>
          {strings.useHere}
        </button>
      </main>
    );
  }
  if (!engine || needsName) {
    return (
      <Login
        askName={needsName}
        onSession={async (session, newUser) => {
          await store.saveSession(session);
          const made = makeEngine(store, session);
          if (newUser) setNeedsName(true);
          setEngine(made);
        }}
        onName={async (name, photo) => {
          await engine?.setName(name);
          if (photo) await engine?.setPhoto(photo);
          setNeedsName(false);
        }}
      />
    );
  }
  return <Main engine={engine} />;
}

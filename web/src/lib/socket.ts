// One WebSocket per device (docs/protocol.md): auth frame, answers by id, reconnect with backoff.
import type { ConnectionState } from "./types";

export class CommandError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface SocketHandlers {
  token(): string;
  /** Every event, in arrival order, with the connection it came on; queued ones are
   * acked once stored, and only on that same connection (`ackOn`). */
  onEvent(event: string, data: Record<string, unknown>, connection: number): void;
  onState(state: ConnectionState): void;
  /** After `ready`: the moment to send again what was not answered. */
  onReady(): void;
  /** The token was refused: refresh it; false means the device is gone. */
  onInvalidToken(): Promise<boolean>;
  onRevoked(): void;
}

const REQUEST_TIMEOUT_MS = 10_000;
const MAX_BACKOFF_MS = 10_000;

interface Waiter {
  resolve(data: unknown): void;
  reject(error: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

export class Socket {
  private ws: WebSocket | null = null;
  private nextId = 1;
  private waiters = new Map<number, Waiter>();
  private attempts = 0;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private stopped = true;
  private authenticated = false;
  /** Counts connections: an ack is valid only on the connection its event came on. */
  private connection = 0;

  constructor(
    private readonly url: string,
    private readonly handlers: SocketHandlers,
  ) {}

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.ws?.close(1000);
    this.ws = null;
  }

  /** Drop the connection now and reconnect when the network is back (window `offline`). */
  drop(): void {
    this.ws?.close(1000);
  }

  /** Reconnect at once, skipping the backoff (window `online`). */
  reconnectNow(): void {
    if (this.stopped || (this.ws && this.ws.readyState <= WebSocket.OPEN)) return;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.attempts = 0;
    this.connect();
  }

  get ready(): boolean {
    return this.authenticated && this.ws?.readyState === WebSocket.OPEN;
  }

  /** Send a command and wait for its answer's data; rejects with the error code. */
  request(type: string, data?: unknown): Promise<unknown> {
    if (!this.ready || !this.ws) return Promise.reject(new CommandError("offline", "Not connected."));
    const id = this.nextId++;
    const ws = this.ws;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(id);
        reject(new CommandError("timeout", "No answer."));
      }, REQUEST_TIMEOUT_MS);
      this.waiters.set(id, { resolve, reject, timer });
      ws.send(JSON.stringify(data === undefined ? { id, type } : { id, type, data }));
    });
  }

  /** Ack up to `upTo` if the connection that sent it is still the open one. */
  ackOn(connection: number, upTo: number): void {
    if (connection === this.connection) this.send("ack", { upTo });
  }

  /** A command that needs no answer (ack, typing). */
  send(type: string, data: unknown): void {
    if (this.ready) this.ws?.send(JSON.stringify({ type, data }));
  }

  private connect(): void {
    this.connection += 1;
    this.handlers.onState("connecting");
    this.authenticated = false;
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => {
      ws.send(JSON.stringify({ type: "auth", data: { token: this.handlers.token() } }));
    };
    ws.onmessage = (message) => {
      if (ws !== this.ws) return;
      const frame = JSON.parse(String(message.data)) as Record<string, unknown>;
      if (typeof frame.event === "string") {
        const data = (frame.data ?? {}) as Record<string, unknown>;
        if (frame.event === "ready") {
          this.authenticated = true;
          this.attempts = 0;
          this.handlers.onState("catching-up");
          this.handlers.onReady();
        } else if (frame.event === "drained") {
          this.handlers.onState("online");
        }
        this.handlers.onEvent(frame.event, data, this.connection);
        return;
      }
      const waiter = typeof frame.id === "number" ? this.waiters.get(frame.id) : undefined;
      if (!waiter) return; // errors of fire-and-forget commands: nothing waits for them
      this.waiters.delete(frame.id as number);
      clearTimeout(waiter.timer);
      if (frame.ok) waiter.resolve(frame.data);
      else {
        const error = frame.error as { code: string; message: string };
        waiter.reject(new CommandError(error.code, error.message));
      }
    };
    ws.onclose = (close) => {
      if (ws !== this.ws) return;
      this.ws = null;
      this.authenticated = false;
      for (const waiter of this.waiters.values()) {
        clearTimeout(waiter.timer);
        waiter.reject(new CommandError("offline", "The connection closed."));
      }
      this.waiters.clear();
      if (this.stopped) return;
      void this.afterClose(close.code, close.reason);
    };
  }

  private async afterClose(code: number, reason: string): Promise<void> {
    if (code === 1008 && reason === "device_revoked") {
      this.stopped = true;
      this.handlers.onRevoked();
      return;
    }
    if (code === 4409) {
      // Another connection of this device took over (another tab): do not fight it.
      this.stopped = true;
      this.handlers.onState("elsewhere");
      return;
    }
    this.handlers.onState(navigator.onLine ? "connecting" : "offline");
    if (code === 1008 && reason === "invalid_token") {
      const refreshed = await this.handlers.onInvalidToken().catch(() => true);
      if (!refreshed) {
        this.stopped = true;
        this.handlers.onRevoked();
        return;
      }
    }
    const delay = Math.min(MAX_BACKOFF_MS, 250 * 2 ** this.attempts) * (0.5 + Math.random() / 2);
    this.attempts += 1;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (!this.stopped) this.connect();
    }, delay);
  }
}

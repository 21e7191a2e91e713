// The HTTP API (README, docs/protocol.md), same origin: tokens go in headers, never in URLs.
import type { Session } from "./types";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

async function parse(response: Response): Promise<unknown> {
  if (response.status === 204) return null;
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const error = (body as { error?: { code?: string; message?: string } } | null)?.error;
    throw new ApiError(response.status, error?.code ?? "http_error", error?.message ?? response.statusText);
  }
  return body;
}

export async function post(path: string, body: unknown, token?: string): Promise<unknown> {
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  return parse(await fetch(path, { method: "POST", headers, body: JSON.stringify(body) }));
}

export interface CodeSent {
  phone: string;
  expiresIn: number;
  outbox?: string | null;
}

export async function requestCode(phone: string): Promise<CodeSent> {
  return (await post("/v1/auth/code", { phone })) as CodeSent;
}

export async function verify(phone: string, code: string): Promise<Session & { newUser: boolean }> {
  const body = { phone, code, device: { name: "Web browser", platform: "web" } };
  return (await post("/v1/auth/verify", body)) as Session & { newUser: boolean };
}

/** Calls made on behalf of a logged-in device; a 401 refreshes the tokens once and retries. */
export class Api {
  constructor(
    private session: Session,
    private readonly onSession: (session: Session) => Promise<void>,
  ) {}

  get token(): string {
    return this.session.accessToken;
  }

  private refreshing: Promise<boolean> | null = null;

  /** New tokens from the refresh token; false when the device is gone (log out).
   * Callers at the same moment (the socket and an HTTP call) share one refresh: the
   * server rotates the refresh token, so a second use of the old one would fail. */
  refresh(): Promise<boolean> {
    this.refreshing ??= this.rotate().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  private async rotate(): Promise<boolean> {
    try {
      const fresh = (await post("/v1/auth/refresh", {
        refreshToken: this.session.refreshToken,
      })) as Session;
      this.session = { ...this.session, accessToken: fresh.accessToken, refreshToken: fresh.refreshToken };
      await this.onSession(this.session);
      return true;
    } catch (error) {
      if (error instanceof ApiError && error.status < 500) return false;
      throw error;
    }
  }

  async request(path: string, init: RequestInit = {}): Promise<Response> {
    const attempt = () =>
      fetch(path, {
        ...init,
        headers: { ...(init.headers as Record<string, string>), Authorization: `Bearer ${this.token}` },
      });
    let response = await attempt();
    if (response.status === 401 && (await this.refresh())) response = await attempt();
    return response;
  }

  async json(path: string, method = "GET", body?: unknown): Promise<unknown> {
    const init: RequestInit = { method };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { "Content-Type": "application/json" };
    }
    return parse(await this.request(path, init));
  }

  me(): Promise<{ id: string; name: string; phone: string }> {
    return this.json("/v1/me") as Promise<{ id: string; name: string; phone: string }>;
  }

  setName(name: string): Promise<unknown> {
    return this.json("/v1/me", "PATCH", { name });
  }

  user(id: string): Promise<Profile> {
    return this.json(`/v1/users/${encodeURIComponent(id)}`) as Promise<Profile>;
  }

  /** Make an uploaded image the profile photo; the answer says when it was set. */
  setPhoto(attachmentId: string): Promise<{ updatedAt: string }> {
    return this.json("/v1/me/photo", "PUT", { attachmentId }) as Promise<{ updatedAt: string }>;
  }

  removePhoto(): Promise<unknown> {
    return this.json("/v1/me/photo", "DELETE");
  }

  /** A user's photo as the server's small JPEG, or null when they have none or hide it (404). */
  async photoThumbnail(userId: string): Promise<Blob | null> {
    const response = await this.request(`/v1/users/${encodeURIComponent(userId)}/photo?size=thumbnail`);
    if (response.status === 404) return null;
    if (!response.ok) await parse(response);
    return response.blob();
  }

  lookup(phones: string[]): Promise<{ matches: { input: string; userId: string; name: string }[] }> {
    return this.json("/v1/contacts/lookup", "POST", { phones }) as Promise<{
      matches: { input: string; userId: string; name: string }[];
    }>;
  }

  logout(): Promise<unknown> {
    return this.json("/v1/auth/logout", "POST");
  }

  async download(attachmentId: string): Promise<Blob> {
    const response = await this.request(`/v1/attachments/${encodeURIComponent(attachmentId)}`);
    if (!response.ok) await parse(response);
    return response.blob();
  }

  /** Upload a file, reporting progress from 0 to 1: in one request, or resumable when large
   * or when it comes with a thumbnail this device made (base64 JPEG: a video's poster). */
  async upload(
    file: File,
    onProgress: (fraction: number) => void,
    signal?: AbortSignal,
    thumbnail?: string,
  ): Promise<Record<string, unknown>> {
    const bytes = await file.arrayBuffer();
    const digest = await crypto.subtle.digest("SHA-256", bytes);
    const hash = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
    if (file.size >= RESUMABLE_FROM_BYTES || thumbnail) {
      return this.uploadInParts(file, hash, onProgress, signal, thumbnail);
    }
    const send = () =>
      new Promise<{ status: number; body: unknown }>((resolve, reject) => {
        const xhr = new XMLHttpRequest();
        xhr.open("POST", "/v1/attachments");
        xhr.setRequestHeader("Authorization", `Bearer ${this.token}`);
        xhr.setRequestHeader("Content-Type", "application/octet-stream");
        xhr.setRequestHeader("X-Content-SHA256", hash);
        xhr.setRequestHeader("X-File-Name", encodeURIComponent(file.name));
        xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
        xhr.onload = () => {
          let body: unknown = null;
          try {
            body = JSON.parse(xhr.responseText);
          } catch {
            body = null;
          }
          resolve({ status: xhr.status, body });
        };
        xhr.onerror = () => reject(new ApiError(0, "network", "The upload failed."));
        xhr.onabort = () => reject(new ApiError(0, "cancelled", "The upload was cancelled."));
        signal?.addEventListener("abort", () => xhr.abort());
        xhr.send(bytes);
      });
    let result = await send();
    if (result.status === 401 && (await this.refresh())) result = await send();
    if (result.status >= 400) {
      const error = (result.body as { error?: { code?: string; message?: string } } | null)?.error;
      throw new ApiError(result.status, error?.code ?? "http_error", error?.message ?? "Upload failed.");
    }
    onProgress(1);
    return result.body as Record<string, unknown>;
  }

  /** POST /v1/uploads, then PATCH parts; after a failed part, ask where to resume and go on. */
  private async uploadInParts(
    file: File,
    hash: string,
    onProgress: (fraction: number) => void,
    signal?: AbortSignal,
    thumbnail?: string,
  ): Promise<Record<string, unknown>> {
    const cancelled = () => new ApiError(0, "cancelled", "The upload was cancelled.");
    let upload = (await this.json("/v1/uploads", "POST", {
      size: file.size,
      sha256: hash,
      fileName: file.name,
      ...(thumbnail ? { thumbnail } : {}),
    })) as Upload;
    const path = `/v1/uploads/${encodeURIComponent(upload.uploadId)}`;
    let failures = 0;
    while (!upload.attachment) {
      if (signal?.aborted) throw cancelled();
      try {
        const response = await this.request(path, {
          method: "PATCH",
          body: file.slice(upload.offset, upload.offset + PART_BYTES),
          headers: { "Upload-Offset": String(upload.offset), "Content-Type": "application/octet-stream" },
          signal,
        });
        upload = (await parse(response)) as Upload;
        failures = 0;
      } catch (error) {
        if (signal?.aborted) throw cancelled();
        const retryable = !(error instanceof ApiError) || error.status >= 500 || error.status === 409;
        failures += 1;
        if (!retryable || failures > PART_RETRIES) throw error;
        await new Promise((resolve) => setTimeout(resolve, 500 * failures));
        upload = (await this.json(path)) as Upload; // the offset the server has
      }
      onProgress(upload.offset / upload.size);
    }
    return upload.attachment;
  }
}

export interface Profile {
  id: string;
  name: string;
  photo?: { updatedAt: string } | null;
}

/** Files at least this large go up in parts that survive a dropped connection. */
export const RESUMABLE_FROM_BYTES = 8 * 1024 * 1024;
const PART_BYTES = 4 * 1024 * 1024;
const PART_RETRIES = 5;

interface Upload {
  uploadId: string;
  size: number;
  offset: number;
  attachment: Record<string, unknown> | null;
}

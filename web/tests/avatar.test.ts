import { describe, expect, it } from "vitest";
import { initials, photoChanged, photoCheckDue, PHOTO_CHECK_EVERY_MS } from "../src/lib/avatar";
import { posterSize, posterTime, toBase64 } from "../src/lib/poster";
import { estimateHeight } from "../src/lib/state";
import type { StoredMessage } from "../src/lib/types";

describe("avatars", () => {
  it("shows up to two initials", () => {
    expect(initials("Ada Lovelace")).toBe("AL");
    expect(initials("  bob ")).toBe("B");
    expect(initials("Jean Paul Sartre")).toBe("JP");
    expect(initials("élodie")).toBe("É");
    expect(initials("")).toBe("?");
  });

  it("reads a peer's profile again at most every few minutes", () => {
    expect(photoCheckDue(undefined, 1000)).toBe(true);
    expect(photoCheckDue(1000, 1000 + PHOTO_CHECK_EVERY_MS - 1)).toBe(false);
    expect(photoCheckDue(1000, 1000 + PHOTO_CHECK_EVERY_MS)).toBe(true);
    expect(PHOTO_CHECK_EVERY_MS).toBe(5 * 60 * 1000);
  });

  it("fetches a photo again only when the profile says it changed", () => {
    expect(photoChanged(undefined, null)).toBe(true);
    expect(photoChanged({ updatedAt: null }, null)).toBe(false);
    expect(photoChanged({ updatedAt: "2026-01-01T00:00:00Z" }, "2026-01-01T00:00:00Z")).toBe(false);
    expect(photoChanged({ updatedAt: "2026-01-01T00:00:00Z" }, "2026-01-02T00:00:00Z")).toBe(true);
    expect(photoChanged({ updatedAt: "2026-01-01T00:00:00Z" }, null)).toBe(true);
  });
});

describe("video posters", () => {
  it("scales the frame down to 320 px on its longer side, never up", () => {
    expect(posterSize(1920, 1080, 320)).toEqual({ width: 320, height: 180 });
    expect(posterSize(1080, 1920, 320)).toEqual({ width: 180, height: 320 });
    expect(posterSize(200, 100, 320)).toEqual({ width: 200, height: 100 });
    expect(posterSize(5000, 1, 320)).toEqual({ width: 320, height: 1 });
    expect(posterSize(0, 0, 320)).toEqual({ width: 0, height: 0 });
  });

  it("takes the frame a little in, or the first when the length is unknown", () => {
    expect(posterTime(60)).toBe(1);
    expect(posterTime(2)).toBe(0.5);
    expect(posterTime(0.1)).toBe(0);
    expect(posterTime(Infinity)).toBe(0);
    expect(posterTime(NaN)).toBe(0);
  });

  it("encodes the JPEG as base64, in chunks for large ones", () => {
    expect(toBase64(new TextEncoder().encode("pigeon").buffer)).toBe("cGlnZW9u");
    const big = new Uint8Array(100_000).map((_, i) => i % 251);
    const back = Uint8Array.from(atob(toBase64(big.buffer)), (c) => c.charCodeAt(0));
    expect(back).toEqual(big);
  });
});

function text(body: string, extra: Partial<StoredMessage> = {}): StoredMessage {
  return {
    key: "k", chatId: "c", messageId: "m", clientMessageId: null, seq: 1, kind: "text",
    senderId: "u", text: body, attachments: [], createdAt: "2026-01-01T00:00:00Z",
    own: false, sent: true, ...extra,
  };
}

describe("row heights before measuring", () => {
  it("grows with wrapped lines, quotes and attachments", () => {
    const one = estimateHeight(text("hi"));
    expect(estimateHeight(text("x".repeat(200)))).toBeGreaterThan(one);
    expect(estimateHeight(text("a\nb\nc"))).toBe(one + 40);
    expect(estimateHeight(text("hi", { replyTo: "m0" }))).toBe(one + 40);
    const image = { attachmentId: "a", mimeType: "image/png", size: 1, fileName: "p.png", width: 640, height: 480 };
    expect(estimateHeight(text("", { attachments: [image] }))).toBe(40 + 240);
    expect(estimateHeight(text("", { kind: "system" }))).toBe(34);
  });
});

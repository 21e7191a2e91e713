// Rules of profile photos and avatars that need no DOM (Vitest covers them).

/** A peer's profile (and photo) is read again at most this often, when their chat is opened:
 * the protocol has no event for a changed profile. */
export const PHOTO_CHECK_EVERY_MS = 5 * 60 * 1000;

/** Up to two letters for an avatar without a photo: "Ada Lovelace" -> "AL", "bob" -> "B". */
export function initials(name: string): string {
  const words = name.trim().split(/\s+/u).filter(Boolean);
  const letters = words.slice(0, 2).map((w) => Array.from(w)[0] ?? "");
  return letters.join("").toUpperCase() || "?";
}

/** Whether a profile last read at `checkedAt` (ms, undefined: never) should be read again. */
export function photoCheckDue(checkedAt: number | undefined, now: number, every = PHOTO_CHECK_EVERY_MS): boolean {
  return checkedAt === undefined || now - checkedAt >= every;
}

/** Whether the stored photo is out of date against the profile's `photo.updatedAt`. */
export function photoChanged(stored: { updatedAt: string | null } | undefined, updatedAt: string | null): boolean {
  return stored === undefined || stored.updatedAt !== updatedAt;
}

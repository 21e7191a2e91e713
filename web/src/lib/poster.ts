// A video's poster made on this device (the server cannot decode video, and with end-to-end
// encryption it will see no content at all): a frame drawn on a canvas, as a small JPEG.

/** The poster's longer side at most, in pixels. */
export const POSTER_MAX_SIDE = 320;
export const POSTER_QUALITY = 0.7;
/** The server's default PIGEON_MEDIA_CLIENT_THUMBNAIL_MAX_BYTES. */
export const POSTER_MAX_BYTES = 16 * 1024;
/** Tried in turn until the JPEG fits: (scale of POSTER_MAX_SIDE, quality). */
export const POSTER_ATTEMPTS: readonly [number, number][] = [
  [1, POSTER_QUALITY],
  [1, 0.5],
  [0.75, 0.5],
  [0.5, 0.4],
];
const POSTER_TIMEOUT_MS = 5000;

/** The size to draw a `width` x `height` frame at: at most `maxSide` a side, never enlarged. */
export function posterSize(width: number, height: number, maxSide: number): { width: number; height: number } {
  if (!(width > 0 && height > 0)) return { width: 0, height: 0 };
  const scale = Math.min(1, maxSide / Math.max(width, height));
  return { width: Math.max(1, Math.round(width * scale)), height: Math.max(1, Math.round(height * scale)) };
}

/** Where to take the frame from: a little in (a first frame is often black), or the start. */
export function posterTime(duration: number): number {
  return Number.isFinite(duration) && duration > 0.2 ? Math.min(1, duration / 4) : 0;
}

export function toBase64(bytes: ArrayBuffer): string {
  const view = new Uint8Array(bytes);
  let binary = "";
  for (let i = 0; i < view.length; i += 0x8000) {
    binary += String.fromCharCode(...view.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

function once(target: HTMLVideoElement, event: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("timeout")), POSTER_TIMEOUT_MS);
    target.addEventListener(event, () => { clearTimeout(timer); resolve(); }, { once: true });
    target.addEventListener("error", () => { clearTimeout(timer); reject(new Error("error")); }, { once: true });
  });
}

/** The poster of a video file as base64 JPEG, or null when the browser cannot decode it. */
export async function makePoster(file: Blob): Promise<string | null> {
  const url = URL.createObjectURL(file);
  const video = document.createElement("video");
  video.muted = true;
  video.playsInline = true;
  video.preload = "auto";
  try {
    const loaded = once(video, "loadeddata");
    video.src = url;
    await loaded;
    const at = posterTime(video.duration);
    if (at > 0) {
      const seeked = once(video, "seeked");
      video.currentTime = at;
      await seeked;
    }
    for (const [scale, quality] of POSTER_ATTEMPTS) {
      const size = posterSize(video.videoWidth, video.videoHeight, Math.round(POSTER_MAX_SIDE * scale));
      if (size.width === 0) return null;
      const canvas = document.createElement("canvas");
      canvas.width = size.width;
      canvas.height = size.height;
      canvas.getContext("2d")?.drawImage(video, 0, 0, size.width, size.height);
      const blob = await new Promise<Blob | null>((resolve) => canvas.toBlob(resolve, "image/jpeg", quality));
      if (blob && blob.size <= POSTER_MAX_BYTES) return toBase64(await blob.arrayBuffer());
    }
    return null;
  } catch {
    return null; // not a video this browser plays: sent without a poster
  } finally {
    video.removeAttribute("src");
    video.load();
    URL.revokeObjectURL(url);
  }
}

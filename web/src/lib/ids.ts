// Random ids. crypto.randomUUID exists only in secure contexts (https, localhost);
// getRandomValues works on a plain-http LAN address too.
export function newId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

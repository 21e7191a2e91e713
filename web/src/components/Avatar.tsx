// A person's or group's picture: their profile photo (from a blob: URL), or their initials.
import { initials } from "../lib/avatar";

interface Props {
  name: string;
  /** An object URL of the photo; null or undefined: initials. */
  photo?: string | null;
  size?: "small" | "large";
}

export function Avatar({ name, photo, size = "small" }: Props) {
  return (
    <span
      className={size === "large" ? "avatar large" : "avatar"}
      data-testid="avatar"
      data-photo={photo ? "yes" : "no"}
      aria-hidden="true"
    >
      {photo ? <img src={photo} alt="" /> : initials(name)}
    </span>
  );
}

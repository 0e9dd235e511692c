/** JWT expiry, read without verifying (the server verifies): milliseconds since the epoch, or null. */
export function tokenExpiry(token: string): number | null {
  const part = token.split(".")[1];
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const json = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
    const exp = JSON.parse(json)?.exp;
    return typeof exp === "number" ? exp * 1000 : null;
  } catch {
    return null;
  }
}

/** Refresh this long before `exp`. Short-lived tokens refresh at half their remaining life. */
export const REFRESH_BEFORE_MS = 30_000;

/** How long to wait before refreshing a token that expires at `expMs`. */
export function refreshDelay(expMs: number, now = Date.now()): number {
  const left = expMs - now;
  return Math.max(left - REFRESH_BEFORE_MS, left / 2, 0);
}

/** True when the token expires within REFRESH_BEFORE_MS (or has no readable expiry: false). */
export function expiresSoon(token: string, now = Date.now()): boolean {
  const exp = tokenExpiry(token);
  return exp !== null && exp - now < REFRESH_BEFORE_MS;
}

export function isExpired(token: string, now = Date.now()): boolean {
  const exp = tokenExpiry(token);
  return exp !== null && exp <= now;
}

// Reads a session token's claims (without verifying it: the server did, before this is used).

const ALIASES: Record<string, string> = { starter: "free", professional: "premium", institutional: "whale" };

export function tokenClaims(token: string): { user: string | null; tier: string } {
  try {
    const part = token.split(".")[1] ?? "";
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "=");
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes)) as { sub?: unknown; tier?: unknown };
    const tier = typeof claims.tier === "string" ? claims.tier.toLowerCase() : "free";
    return { user: typeof claims.sub === "string" ? claims.sub : null, tier: ALIASES[tier] ?? tier };
  } catch {
    return { user: null, tier: "free" };
  }
}

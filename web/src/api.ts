// HTTP reads against the server the page came from.

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** GETs JSON from the server, with the viewer's token when there is one. */
export async function getJson<T>(path: string, token?: string | null, timeoutMs = 5000): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    const response = await fetch(path, { headers, cache: "no-store", signal: controller.signal });
    if (!response.ok) {
      let message = `HTTP ${response.status}`;
      try {
        const body = (await response.json()) as { error?: { message?: string } };
        if (body.error?.message) message = body.error.message;
      } catch {
        // not JSON: keep the status
      }
      throw new HttpError(response.status, message);
    }
    return (await response.json()) as T;
  } finally {
    clearTimeout(timer);
  }
}

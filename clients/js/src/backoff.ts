/** Exponential backoff with full jitter: the n-th delay is uniform in [0, min(max, initial * 2^n)]. */
export class Backoff {
  private attempt = 0;

  constructor(
    private readonly initialMs: number,
    private readonly maxMs: number,
  ) {}

  next(): number {
    const cap = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.random() * cap;
  }

  reset(): void {
    this.attempt = 0;
  }
}

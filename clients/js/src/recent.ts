/** A set that remembers only its most recent `max` keys (insertion order evicts the oldest). */
export class RecentSet {
  private readonly keys = new Set<string>();

  constructor(private readonly max = 1000) {}

  /** Adds `key`; false when it was already there. */
  add(key: string): boolean {
    if (this.keys.has(key)) return false;
    this.keys.add(key);
    if (this.keys.size > this.max) this.keys.delete(this.keys.values().next().value as string);
    return true;
  }
}

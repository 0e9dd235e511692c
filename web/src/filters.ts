// The signal filters (pair, side, tier): read from and written to the page's query string
// (`?pair=EUR&side=BUY&tier=premium`), so a reload or a shared link keeps them.

import { LADDER } from "./format";
import { NO_FILTERS, type Filters } from "./feed";
import type { SignalRecord } from "./types";

/** The pair as the server normalizes it: upper case, `/` as `-`. */
function normalizePair(text: string): string {
  return text.trim().toUpperCase().replace(/\//g, "-");
}

export function filtersFrom(params: URLSearchParams): Filters {
  return {
    pair: normalizePair(params.get("pair") ?? ""),
    side: (params.get("side") ?? "").trim().toUpperCase(),
    tier: (params.get("tier") ?? "").trim().toLowerCase(),
  };
}

export class FilterBar {
  private readonly pair: HTMLInputElement;
  private readonly pairs: HTMLDataListElement;
  private readonly side: HTMLSelectElement;
  private readonly tier: HTMLSelectElement;
  private readonly clear: HTMLButtonElement;
  private readonly knownPairs = new Set<string>();

  constructor(
    root: HTMLElement,
    initial: Filters,
    private readonly onChange: (filters: Filters) => void,
  ) {
    this.pair = root.querySelector("#filter-pair") as HTMLInputElement;
    this.pairs = root.querySelector("#filter-pairs") as HTMLDataListElement;
    this.side = root.querySelector("#filter-side") as HTMLSelectElement;
    this.tier = root.querySelector("#filter-tier") as HTMLSelectElement;
    this.clear = root.querySelector("#filter-clear") as HTMLButtonElement;
    for (const tier of LADDER) addOption(this.tier, tier);
    this.set(initial);
    const changed = () => this.changed();
    this.pair.addEventListener("input", changed);
    this.side.addEventListener("change", changed);
    this.tier.addEventListener("change", changed);
    this.clear.addEventListener("click", () => {
      this.set(NO_FILTERS);
      this.changed();
    });
    (root as HTMLFormElement).addEventListener("submit", (e) => e.preventDefault());
  }

  get value(): Filters {
    return { pair: normalizePair(this.pair.value), side: this.side.value, tier: this.tier.value };
  }

  /** A signal the feed shows: its pair joins the suggestions, an unusual side the choices. */
  seen(rec: SignalRecord): void {
    const pair = typeof rec.pair === "string" ? rec.pair : "";
    if (pair && !this.knownPairs.has(pair)) {
      this.knownPairs.add(pair);
      const option = document.createElement("option");
      option.value = pair;
      this.pairs.append(option);
    }
    const side = (rec.signal_type ?? "").toUpperCase();
    if (side) addOption(this.side, side);
  }

  private set(f: Filters): void {
    this.pair.value = f.pair;
    if (f.side) addOption(this.side, f.side);
    this.side.value = f.side;
    if (f.tier) addOption(this.tier, f.tier);
    this.tier.value = f.tier;
    this.clear.disabled = !f.pair && !f.side && !f.tier;
  }

  private changed(): void {
    const f = this.value;
    this.clear.disabled = !f.pair && !f.side && !f.tier;
    const url = new URL(location.href);
    for (const key of ["pair", "side", "tier"] as const) {
      if (f[key]) url.searchParams.set(key, f[key]);
      else url.searchParams.delete(key);
    }
    history.replaceState(history.state, "", url);
    this.onChange(f);
  }
}

function addOption(select: HTMLSelectElement, value: string): void {
  if ([...select.options].some((o) => o.value === value)) return;
  const option = document.createElement("option");
  option.value = value;
  option.textContent = value;
  select.append(option);
}

// Durations as the config writes them: "250ms", "30s", "5m", "1h", "1d", or a number of seconds.
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;

/** Milliseconds, or null when the value is not a duration. */
export function parseDuration(value: unknown): number | null {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? Math.round(value * 1000) : null;
  if (typeof value !== 'string') return null;
  const text = value.trim();
  if (/^\d+(?:\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  const m = DURATION.exec(text);
  return m ? Math.round(Number(m[1]) * UNIT_MS[m[2]]) : null;
}

/**
 * The longest duration that becomes a timer: Node holds at most 2^31 - 1 ms (about 24.8 days) and fires a longer
 * timer at once, so a JWKS refresh of 30d would run in a loop.
 */
export const TIMER_MAX_MS = 24 * UNIT_MS.d;
export const TIMER = { max: TIMER_MAX_MS } as const;
/** A window: 0 would turn a limit or the failed-auth guard off without a word. */
export const POSITIVE = { min: 1 } as const;

/** Milliseconds in the largest unit that writes them whole: 86400000 -> "1d", 1500 -> "1500ms". */
export function formatDuration(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) if (ms >= UNIT_MS[unit] && ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  return `${ms}ms`;
}

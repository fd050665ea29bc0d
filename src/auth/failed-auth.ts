// Brute-force guard: counts failed authentications (401s) per client IP and refuses an IP over its limit.
import { LRUCache } from 'lru-cache';
import type { Clock } from '../clock.js';
import type { FailedAuthConfig } from '../config/types.js';
import { ProxyError } from '../http/errors.js';

export interface FailedAuthGuardOptions {
  readonly clock: Clock;
  /** Most IPs tracked; the least recently seen are forgotten first. */
  readonly maxIps?: number;
}

/**
 * GCRA state of one IP, kept as `base + units * windowMs / limit` = the theoretical arrival time (TAT) of the
 * next failure. Holding a whole-unit count instead of a fractional TAT keeps every comparison in integer
 * arithmetic (for integer ms), so "limit - 1 failures allowed, limit refused" holds exactly for any window/limit.
 * Mutated in place: one allocation per tracked IP, none per call.
 */
interface IpState {
  base: number;
  units: number;
}

/**
 * Scheme: GCRA, the token bucket of SPEC section 5, applied to failures. An IP may fail `limit` times in a
 * burst, then earns back one attempt every `windowMs / limit`, so its sustained rate can never exceed
 * `limit` per `window`. Unlike a fixed window, there is no boundary where an attacker can fire 2 x limit,
 * and unlike a sliding log it costs O(1) time and memory per IP. A refused request is not counted (it never
 * reaches a credential check), and a success does not reset the count: an attacker holding one valid key
 * must not be able to launder guesses between successes.
 */
export class FailedAuthGuard {
  private readonly clock: Clock;
  private readonly limit: number;
  private readonly windowMs: number;
  private readonly ips: LRUCache<string, IpState>;

  constructor(config: FailedAuthConfig, options: FailedAuthGuardOptions) {
    if (!Number.isSafeInteger(config.limit) || config.limit < 1) {
      throw new Error(`failedAuth.limit must be a positive integer, got ${config.limit}`);
    }
    if (!Number.isFinite(config.windowMs) || config.windowMs <= 0) {
      throw new Error(`failedAuth.window must be positive, got ${config.windowMs}ms`);
    }
    const maxIps = options.maxIps ?? 100_000;
    if (!Number.isSafeInteger(maxIps) || maxIps < 1) throw new Error(`maxIps must be a positive integer, got ${maxIps}`);
    this.clock = options.clock;
    this.limit = config.limit;
    this.windowMs = config.windowMs;
    this.ips = new LRUCache<string, IpState>({ max: maxIps });
  }

  /** Throws 429 `rate_limit_exceeded` with Retry-After when `ip` has used up its failed attempts. */
  check(ip: string): void {
    const state = this.ips.get(ip);
    if (state === undefined) return;
    const excess = this.scaledBacklog(state, this.clock.now()) - this.scaledAllowance();
    if (excess <= 0) return;
    // excess / limit is the time in ms until the backlog falls back to where one more failure fits.
    const retryAfter = Math.max(1, Math.ceil(excess / this.limit / 1000));
    throw new ProxyError('rate_limit_exceeded', 'too many failed authentication attempts from this address', 'failed_auth', {
      'retry-after': String(retryAfter),
    });
  }

  /** Counts one failed authentication (a 401) from `ip`. */
  recordFailure(ip: string): void {
    const now = this.clock.now();
    const state = this.ips.get(ip);
    if (state === undefined || this.scaledBacklog(state, now) <= 0) {
      // Fresh, or every earlier failure has been earned back: restart from now. Reuse the object if there is one.
      if (state === undefined) this.ips.set(ip, { base: now, units: 1 });
      else {
        state.base = now;
        state.units = 1;
      }
      return;
    }
    state.units += 1;
    // Fold whole windows into base so units stays below limit and the scaled numbers stay small and exact.
    if (state.units >= this.limit) {
      const windows = Math.floor(state.units / this.limit);
      state.base += windows * this.windowMs;
      state.units -= windows * this.limit;
    }
  }

  /** IPs currently tracked (for tests and metrics). */
  get size(): number {
    return this.ips.size;
  }

  /** (TAT - now) * limit: how far ahead of now this IP's failures have pushed it, scaled to stay integral. */
  private scaledBacklog(state: IpState, now: number): number {
    return (state.base - now) * this.limit + state.units * this.windowMs;
  }

  /**
   * (windowMs - windowMs / limit) * limit: the largest backlog that still leaves room for one more failure,
   * i.e. limit - 1 failures inside a burst. At or beyond limit failures the next request is refused.
   */
  private scaledAllowance(): number {
    return this.windowMs * this.limit - this.windowMs;
  }
}

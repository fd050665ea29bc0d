// The contract of a rate-limit store; memory and Redis both pass test/support/store-contract.ts.

/** One bucket to charge: a GCRA token bucket of `limit` units refilled evenly over `windowMs`. */
export interface BucketRequest {
  /** Full key, already namespaced by policy and dimension (e.g. `standard:tenant:acme`). */
  readonly key: string;
  readonly limit: number;
  readonly windowMs: number;
}

export interface BucketState {
  /** Units left after this decision. */
  readonly remaining: number;
  /** Milliseconds until the bucket is full again. */
  readonly resetMs: number;
  /** Milliseconds until one more unit would be admitted (0 when admitted now). */
  readonly retryAfterMs: number;
}

export interface Decision {
  /** True when every bucket admitted the request; then one unit was consumed from each. */
  readonly allowed: boolean;
  /**
   * One entry per requested bucket, in order. When refused, nothing was consumed and each entry is its
   * bucket's uncharged state: exactly the buckets that refused have retryAfterMs > 0.
   * Keys within one call must be distinct. Redis Cluster would need a hash tag in the keys (one script, many keys).
   */
  readonly buckets: readonly BucketState[];
}

export interface RateLimitStore {
  /**
   * Charges one unit from every bucket, atomically: all or nothing.
   * Rejects with StoreUnavailableError when the backend is down or slower than its timeout.
   * A store that decides in-process answers directly, without a promise: the pipeline then needs no await.
   */
  consume(buckets: readonly BucketRequest[]): Decision | Promise<Decision>;
  /** True while the store can answer (always for memory). */
  ready(): boolean;
  close(): Promise<void>;
}

export class StoreUnavailableError extends Error {
  override readonly name = 'StoreUnavailableError';
  readonly code = 'STORE_UNAVAILABLE';
}

// Upstream connection limits (upstreams.*.maxConnections, maxPending): at most so many requests on their way to an
// upstream, one per connection, and a bounded line of requests waiting for one of them to finish. The line is
// gatehouse's, not undici's: a request given up while waiting (its client left, or `timeout` passed) just leaves
// it, and never costs a connection or holds up a shutdown.

/** A request in line: started when its turn comes, or taken out of line when it is given up. */
export interface Queued {
  /** Its upstream's limit, from the plan the request runs on (after a reload, requests of two plans may wait). */
  readonly maxConnections: number;
  /** Given up (see leave()): skipped when its turn comes. */
  readonly abandoned: boolean;
  /** Now waiting in line (arms its wait timer). */
  wait(): void;
  /** Its turn: hand it to undici. It counts as active until it settles and calls release(). */
  send(): void;
}

/**
 * One per upstream name, kept across reloads (compile.ts), so requests still running on a replaced pool count
 * against the limit of the new one: a reload never lets more requests reach the upstream than the limit says.
 */
export class UpstreamQueue {
  /** Requests handed to undici and not settled: at most `maxConnections`. */
  active = 0;
  /**
   * The line from `head` on, given-up requests included until they reach the head or a compaction: taking one out
   * of the middle would cost a search and a move of everything behind it, for each of thousands timing out at once.
   */
  private line: Queued[] = [];
  private head = 0;
  /** Requests in line and not given up. */
  waiting = 0;
  /** Set while pump() starts requests: one that settles at once (a closed pool) must not start the next from inside. */
  private pumping = false;

  /** Whether one more request may be forwarded now or wait in line; false means 503 at once. */
  hasRoom(maxConnections: number, maxPending: number): boolean {
    return (this.active < maxConnections && this.waiting === 0) || this.waiting < maxPending;
  }

  /** Sends the request now, or puts it in line (first come, first sent). Call hasRoom() first. */
  enter(request: Queued): void {
    if (this.active < request.maxConnections && this.waiting === 0) return this.start(request);
    this.line.push(request);
    this.waiting++;
    request.wait();
    // Room may be left when a reload raised the limit while others waited.
    this.pump();
  }

  /** A request in line was given up (`abandoned` is now true): it no longer counts, and is skipped on its turn. */
  leave(): void {
    this.waiting--;
    const queued = this.line.length - this.head;
    // Mostly given-up entries: keep only the rest, so a line that never moves cannot grow past twice maxPending.
    if (queued > 64 && this.waiting < queued / 2) {
      this.line = this.line.slice(this.head).filter((r) => !r.abandoned);
      this.head = 0;
    }
  }

  /** A sent request settled: its connection is free for the next in line. */
  release(): void {
    this.active--;
    this.pump();
  }

  private start(request: Queued): void {
    this.active++;
    request.send();
  }

  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.head < this.line.length) {
        const next = this.line[this.head];
        if (next.abandoned) {
          this.head++;
          continue;
        }
        if (this.active >= next.maxConnections) break;
        this.head++;
        this.waiting--;
        this.start(next);
      }
      // Everyone in line started or given up: start over at the beginning of a fresh array.
      if (this.head === this.line.length) {
        this.line = [];
        this.head = 0;
      } else if (this.head > 1024 && this.head > this.line.length / 2) {
        this.line = this.line.slice(this.head);
        this.head = 0;
      }
    } finally {
      this.pumping = false;
    }
  }
}

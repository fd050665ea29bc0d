// Upstream connection limits (upstreams.*.maxConnections, maxPending): at most so many requests on their way to an
// upstream, one per connection, and a bounded line of requests waiting for one of them to finish. The line is
// gatehouse's, not undici's: a request given up while waiting (its client left, or `timeout` passed) just leaves
// it, and never costs a connection or holds up a shutdown.

/** A request in line: started when its turn comes, or taken out of line when it is given up. */
export interface Queued {
  /** Its upstream's limit, from the plan the request runs on (after a reload, requests of two plans may wait). */
  readonly maxConnections: number;
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
  private readonly line: Queued[] = [];
  /** Set while pump() starts requests: one that settles at once (a closed pool) must not start the next from inside. */
  private pumping = false;

  get waiting(): number {
    return this.line.length;
  }

  /** Whether one more request may be forwarded now or wait in line; false means 503 at once. */
  hasRoom(maxConnections: number, maxPending: number): boolean {
    return (this.active < maxConnections && this.line.length === 0) || this.line.length < maxPending;
  }

  /** Sends the request now, or puts it in line (first come, first sent). Call hasRoom() first. */
  enter(request: Queued): void {
    if (this.active < request.maxConnections && this.line.length === 0) return this.start(request);
    this.line.push(request);
    request.wait();
    // Room may be left when a reload raised the limit while others waited.
    this.pump();
  }

  /** Takes a request out of line, given up before its turn. */
  leave(request: Queued): void {
    const at = this.line.indexOf(request);
    if (at !== -1) this.line.splice(at, 1);
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
      while (this.line.length > 0 && this.active < this.line[0].maxConnections) this.start(this.line.shift()!);
    } finally {
      this.pumping = false;
    }
  }
}

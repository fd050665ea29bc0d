// pino, configured once. Credentials never reach it: redact catches the header names that carry them.
import { pino, type Logger, type DestinationStream } from 'pino';
import type { LogConfig } from '../config/types.js';

export type { Logger };

const REDACT = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'headers.authorization',
  'headers["x-api-key"]',
  'authorization',
  'token',
  'key',
  'secret',
];

/**
 * pino's isoTime without formatting a Date per line: the text up to the second (`2026-01-02T03:04:05.`) is
 * formatted once per second, the milliseconds appended. A Date formatted per line cost about as much as the
 * rest of the access line, and at a few requests a second every line has its own millisecond.
 */
export function isoTimeCached(): () => string {
  let lastMs = Number.NaN;
  let text = '';
  let second = Number.NaN;
  let prefix = '';
  return () => {
    const now = Date.now();
    if (now === lastMs) return text;
    lastMs = now;
    const s = Math.floor(now / 1000);
    if (s !== second) {
      second = s;
      // 'YYYY-MM-DDTHH:MM:SS.': 20 characters for every year from 0 to 9999.
      prefix = `,"time":"${new Date(s * 1000).toISOString().slice(0, 20)}`;
    }
    const ms = now - s * 1000;
    text = `${prefix}${ms < 10 ? '00' : ms < 100 ? '0' : ''}${ms}Z"`;
    return text;
  };
}

/** Where batched lines finally go: pino's SonicBoom destination (in buffer mode) has this shape. */
export interface LineSink {
  write(bytes: Buffer): unknown;
  flush(cb?: (err?: Error | null) => void): void;
  flushSync(): void;
  readonly destroyed?: boolean;
}

/**
 * Collects log lines and hands them on in pieces of at least `minBytes`, and at the latest every `flushMs`.
 * Each line is encoded once, straight into a buffer; a batch goes out as those bytes. Handing SonicBoom one
 * string per line (or even one long string per batch) costs more: it measures and re-encodes its whole
 * pending text. Every line (access or application) goes through here, so their order is kept.
 */
export class BatchedDestination implements DestinationStream {
  private buffer: Buffer;
  private used = 0;
  private readonly timer: NodeJS.Timeout;
  private readonly onExit = () => {
    if (this.used > 0 && !this.sink.destroyed) this.flushSync();
  };
  private readonly onBeforeExit = () => this.drain();

  constructor(
    private readonly sink: LineSink,
    private readonly minBytes = 16_384,
    flushMs = 500,
  ) {
    // Room for a batch and then some, so an ordinary line never has to go out before the batch is full.
    this.buffer = Buffer.allocUnsafe(minBytes + 16_384);
    // A quiet proxy must not sit on its lines; the timer never keeps the process alive.
    this.timer = setInterval(() => this.drain(), flushMs).unref();
    // Ahead of pino's own exit hooks (an async destination has them), which flush and end the one behind this.
    process.prependListener('beforeExit', this.onBeforeExit);
    process.prependListener('exit', this.onExit);
  }

  write(line: string): void {
    // Three bytes per UTF-16 unit is the most UTF-8 can need.
    if (this.used + 3 * line.length > this.buffer.length) {
      this.drain();
      if (3 * line.length > this.buffer.length) {
        if (!this.sink.destroyed) this.sink.write(Buffer.from(line, 'utf8'));
        return;
      }
    }
    this.used += this.buffer.write(line, this.used, 'utf8');
    if (this.used >= this.minBytes) this.drain();
  }

  /** pino's logger.flush(cb) lands here. */
  flush(cb?: (err?: Error | null) => void): void {
    this.drain();
    this.sink.flush(cb);
  }

  flushSync(): void {
    this.drain();
    this.sink.flushSync();
  }

  /** Flushes and stops the timer; lines written afterwards still pass straight through. */
  end(): void {
    clearInterval(this.timer);
    process.off('beforeExit', this.onBeforeExit);
    process.off('exit', this.onExit);
    this.flushSync();
  }

  private drain(): void {
    if (this.used === 0 || this.sink.destroyed) return;
    // The sink may keep the bytes (a partial write), so they are its own and the next lines go to a new buffer.
    const batch = this.buffer.subarray(0, this.used);
    this.buffer = Buffer.allocUnsafe(this.buffer.length);
    this.used = 0;
    this.sink.write(batch);
  }
}

export function createLogger(config: LogConfig, destination?: DestinationStream): Logger {
  const options = {
    level: config.level,
    base: undefined,
    timestamp: isoTimeCached(),
    redact: { paths: REDACT, censor: '[redacted]' },
  };
  if (destination) return pino(options, destination);
  // Synchronous writes, as pino's default destination: one write(2) per batch costs less CPU than handing
  // each batch to a libuv worker, and a full pipe slows the proxy instead of piling up lines in memory.
  const sonic = pino.destination({ dest: 1, sync: true, minLength: 0, contentMode: 'buffer' });
  return pino(options, new BatchedDestination(sonic as unknown as LineSink));
}

/** A logger that writes nothing; for tests and the CLI's dry runs. */
export const silentLogger: Logger = pino({ level: 'silent' });

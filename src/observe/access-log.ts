// The access line of SPEC section 8, one per request: exactly what logger.info(record) would write, built by one template.
import { pino, type Logger } from 'pino';

export interface AccessRecord {
  readonly request_id: string;
  readonly method: string;
  readonly path: string | null;
  readonly route: string | null;
  readonly status: number;
  readonly duration_ms: number;
  readonly upstream_ms: number | null;
  readonly tenant: string | null;
  readonly subject: string | null;
  readonly auth: string | null;
  readonly key_id: string | null;
  readonly ip: string | null;
  readonly reason: string | null;
}

const { streamSym, timeSym } = pino.symbols;
const INFO = 30;

/** What JSON must escape: quote, backslash, control characters, and (JSON.stringify's rule) lone surrogates. */
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

const str = (s: string | null): string => (s === null ? 'null' : NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : `"${s}"`);
const num = (n: number | null): string => (n === null || !Number.isFinite(n) ? 'null' : String(n));

/**
 * Writes the access line of one request. pino's generic serializer (key walk, per-value type checks, redaction
 * paths) was a fifth of gatehouse's own CPU time per request; this line has fixed keys and holds no credential,
 * so one template does the same, same bytes, in pino's key order (level, time, fields), through the logger's
 * level, clock and destination.
 */
export function writeAccessLine(logger: Logger, r: AccessRecord): void {
  if (logger.levelVal > INFO) return;
  const time = (logger as unknown as Record<symbol, () => string>)[timeSym]();
  const stream = (logger as unknown as Record<symbol, { write(line: string): unknown }>)[streamSym];
  stream.write(
    `{"level":30${time},"request_id":${str(r.request_id)},"method":${str(r.method)},"path":${str(r.path)},"route":${str(r.route)},` +
      `"status":${num(r.status)},"duration_ms":${num(r.duration_ms)},"upstream_ms":${num(r.upstream_ms)},"tenant":${str(r.tenant)},` +
      `"subject":${str(r.subject)},"auth":${str(r.auth)},"key_id":${str(r.key_id)},"ip":${str(r.ip)},"reason":${str(r.reason)}}\n`,
  );
}

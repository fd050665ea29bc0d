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

export function createLogger(config: LogConfig, destination?: DestinationStream): Logger {
  const options = {
    level: config.level,
    base: undefined,
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: REDACT, censor: '[redacted]' },
  };
  if (destination) return pino(options, destination);
  return pino(options, pino.destination({ dest: 1, sync: false }));
}

/** A logger that writes nothing; for tests and the CLI's dry runs. */
export const silentLogger: Logger = pino({ level: 'silent' });

// Real sockets for integration tests: a recording upstream, gatehouse on a free port, raw HTTP when clients would tidy up.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { request as undiciRequest, Agent } from 'undici';
import { loadConfig } from '../../src/config/load.js';
import { Gateway, type GatewayOptions } from '../../src/http/server.js';
import { createLogger } from '../../src/observe/logger.js';
import { Metrics } from '../../src/observe/metrics.js';

export interface Recorded {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  rawHeaders: string[];
  body: Buffer;
}

export interface Upstream {
  url: string;
  port: number;
  server: Server;
  requests: Recorded[];
  close(): Promise<void>;
}

type Handler = (req: IncomingMessage, res: ServerResponse, recorded: Recorded) => void;

const echo: Handler = (req, res, recorded) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ method: recorded.method, url: recorded.url, headers: recorded.headers }));
};

/** An upstream that records every request (body included) and answers with `handler` (default: JSON echo). */
export async function startUpstream(handler: Handler = echo, options: { buffer?: boolean } = {}): Promise<Upstream> {
  const requests: Recorded[] = [];
  const server = createServer((req, res) => {
    const recorded: Recorded = { method: req.method!, url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.alloc(0) };
    requests.push(recorded);
    if (options.buffer === false) return handler(req, res, recorded);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      recorded.body = Buffer.concat(chunks);
      handler(req, res, recorded);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    server,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export function writeTempFile(name: string, text: string, dir = mkdtempSync(join(tmpdir(), 'gatehouse-test-'))): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

export interface Running {
  url: string;
  port: number;
  adminUrl: string | null;
  gateway: Gateway;
  configPath: string;
  /** Every access-log and other log line, parsed. */
  logs: Array<Record<string, unknown>>;
  /** Every raw log line, to search for leaked secrets. */
  rawLogs: string[];
  close(): Promise<void>;
}

/**
 * Starts gatehouse from YAML text on a free port (server.port and admin.port are forced to 0 via env:
 * write `port: ${PORT:-0}` or rely on the default config template). `env` is used for ${VAR} expansion.
 */
export async function startGatehouse(yaml: string, env: Record<string, string> = {}, options: GatewayOptions = {}): Promise<Running> {
  const configPath = writeTempFile('gatehouse.yaml', yaml);
  const config = loadConfig(configPath, { ...process.env, ...env });
  config.server.port = 0;
  config.server.host = '127.0.0.1';
  if (config.admin) config.admin.port = 0;
  const logs: Array<Record<string, unknown>> = [];
  const rawLogs: string[] = [];
  const logger =
    options.logger ??
    createLogger(
      { level: 'info' },
      {
        write(line: string) {
          rawLogs.push(line);
          logs.push(JSON.parse(line));
        },
      },
    );
  const gateway = new Gateway(config, { metrics: new Metrics(), ...options, logger });
  const { port, adminPort } = await gateway.listen();
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    adminUrl: adminPort ? `http://127.0.0.1:${adminPort}` : null,
    gateway,
    configPath,
    logs,
    rawLogs,
    close: () => gateway.close(),
  };
}

/** A client with its own connection pool, so tests never share sockets by accident. */
export const client = new Agent({ keepAliveTimeout: 1000, connections: 64 });

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: any;
}

/** One HTTP request; `headers` may be a flat [name, value, ...] list to send duplicates. */
export async function call(url: string, options: { method?: string; headers?: Record<string, string> | string[]; body?: string | Buffer } = {}): Promise<Answer> {
  const res = await undiciRequest(url, { method: (options.method ?? 'GET') as 'GET', headers: options.headers, body: options.body, dispatcher: client });
  const text = await res.body.text();
  let json: unknown = undefined;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.statusCode, headers: res.headers as Answer['headers'], text, json };
}

/** Sends bytes exactly as given and returns everything the server answers until it closes or `waitMs` passes. */
export function raw(port: number, text: string | Buffer, waitMs = 2000): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const done = () => {
      socket.destroy();
      resolve(Buffer.concat(chunks).toString('latin1'));
    };
    const timer = setTimeout(done, waitMs);
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      // One complete response with a content-length is enough.
      const textSoFar = Buffer.concat(chunks).toString('latin1');
      const head = textSoFar.indexOf('\r\n\r\n');
      const len = /content-length: (\d+)/i.exec(textSoFar);
      if (head !== -1 && len && textSoFar.length >= head + 4 + Number(len[1])) {
        clearTimeout(timer);
        done();
      }
    });
    socket.on('end', () => {
      clearTimeout(timer);
      done();
    });
    socket.on('error', () => {
      clearTimeout(timer);
      done();
    });
    socket.write(text);
  });
}

/** Status code of a raw HTTP answer (0 when the server closed without answering). */
export const rawStatus = (answer: string): number => Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0);

/** A minimal valid config forwarding everything to ${UPSTREAM} with the given extra YAML sections. */
export function configYaml(sections: { auth?: string; routes?: string; rateLimit?: string; identity?: string; server?: string; admin?: boolean } = {}): string {
  return [
    'version: 1',
    `server:\n  port: 0\n${sections.server ?? ''}`,
    sections.admin ? 'admin:\n  port: 0' : '',
    'upstreams:\n  default:\n    url: ${UPSTREAM}\n    timeout: ${UPSTREAM_TIMEOUT:-5s}\n    connectTimeout: 1s',
    sections.auth ? `auth:\n${sections.auth}` : '',
    sections.identity ? `identity:\n${sections.identity}` : '',
    sections.rateLimit ? `rateLimit:\n${sections.rateLimit}` : '',
    `routes:\n${sections.routes ?? '  - name: all\n    match: { path: /** }\n    auth: none'}`,
  ]
    .filter(Boolean)
    .join('\n');
}

// Keys, provider configs, signed tokens and a controllable JWKS server for the JWT tests.
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, exportJWK, exportSPKI, generateKeyPair, type JWK, type JWTPayload, type JWTHeaderParameters, type CryptoKey } from 'jose';
import type { JwtProviderConfig } from '../../src/config/types.js';
import { ManualClock } from '../../src/clock.js';

export const ISSUER = 'https://auth.example.com/';
export const AUDIENCE = 'api';
export const HS_SECRET = 'a-shared-secret-of-at-least-32-bytes!!';

export interface SigningKey {
  readonly alg: string;
  readonly kid: string;
  readonly privateKey: CryptoKey | Uint8Array;
  /** Public JWK with kid and alg, as an IdP publishes it. */
  readonly jwk: JWK;
  readonly spki: string;
}

export async function makeKey(alg: 'RS256' | 'PS256' | 'ES256' | 'EdDSA', kid: string): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg };
  return { alg, kid, privateKey, jwk, spki: await exportSPKI(publicKey) };
}

export const hsKey = (): SigningKey => ({ alg: 'HS256', kid: 'hs', privateKey: new TextEncoder().encode(HS_SECRET), jwk: {}, spki: '' });

/** Starts every test at the same instant; tokens are built relative to it. */
export const newClock = (): ManualClock => new ManualClock(Date.UTC(2026, 0, 1));
export const seconds = (clock: ManualClock): number => Math.floor(clock.now() / 1000);

export function provider(overrides: Partial<JwtProviderConfig> = {}): JwtProviderConfig {
  return {
    name: 'sso',
    issuer: ISSUER,
    audience: [AUDIENCE],
    algorithms: ['RS256'],
    clockToleranceMs: 30_000,
    jwksCooldownMs: 10_000,
    jwksCacheMaxAgeMs: 600_000,
    claims: { tenant: 'org_id', subject: 'sub', role: 'role', scopes: 'scope', plan: 'plan' },
    defaultTenant: null,
    ...overrides,
  };
}

export interface SignOptions {
  header?: Partial<JWTHeaderParameters>;
  /** Options for jose's sign(), e.g. to declare a crit extension. */
  signOptions?: { crit?: Record<string, boolean> };
  kid?: string | null;
  alg?: string;
}

/** A token that every default provider accepts, unless claims or header say otherwise. */
export async function sign(key: SigningKey, clock: ManualClock, claims: JWTPayload = {}, opts: SignOptions = {}): Promise<string> {
  const now = seconds(clock);
  const payload: JWTPayload = { iss: ISSUER, aud: AUDIENCE, sub: 'user-1', org_id: 'acme', iat: now, exp: now + 3600, ...claims };
  for (const [k, v] of Object.entries(payload)) if (v === undefined) delete payload[k];
  const kid = opts.kid === undefined ? key.kid : opts.kid;
  const header = { alg: opts.alg ?? key.alg, ...(kid === null ? {} : { kid }), ...opts.header } as JWTHeaderParameters;
  return new SignJWT(payload).setProtectedHeader(header).sign(key.privateKey, opts.signOptions);
}

export const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');

export type JwksMode = 'ok' | 'down' | 'slow' | 'garbage' | 'status';

/** A JWKS endpoint on 127.0.0.1 whose keys and behaviour the test changes between requests. */
export class JwksServer {
  mode: JwksMode = 'ok';
  body = 'not json';
  /** The status of every answer in mode 'status' (with `body`). */
  status = 503;
  requests = 0;
  private keys: JWK[];
  private readonly held: ServerResponse[] = [];
  private readonly server: Server;

  private constructor(keys: JWK[]) {
    this.keys = keys;
    this.server = createServer((req, res) => {
      this.requests++;
      if (this.mode === 'down') {
        req.socket.destroy();
      } else if (this.mode === 'slow') {
        this.held.push(res);
      } else if (this.mode === 'garbage') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(this.body);
      } else if (this.mode === 'status') {
        res.writeHead(this.status, { 'content-type': 'text/html', location: '/elsewhere' }).end(this.body);
      } else {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: this.keys }));
      }
    });
  }

  static async start(keys: JWK[]): Promise<JwksServer> {
    const s = new JwksServer(keys);
    await new Promise<void>((resolve) => s.server.listen(0, '127.0.0.1', resolve));
    return s;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/.well-known/jwks.json`;
  }

  publish(keys: JWK[]): void {
    this.keys = keys;
  }

  /** Answers every request held in mode 'slow' with the current keys; returns how many there were. */
  release(): number {
    const held = this.held.splice(0);
    for (const res of held) res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: this.keys }));
    return held.length;
  }

  async close(): Promise<void> {
    for (const res of this.held) res.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Polls until `check` holds; fails after `ms` instead of hanging the test. */
export async function eventually(check: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Reads one labelled value of a prom-client counter. */
export async function counterValue(counter: { get(): Promise<{ values: { labels: object; value: number }[] }> }, labels: Record<string, string>): Promise<number> {
  const { values } = await counter.get();
  const match = values.find((v) => Object.entries(labels).every(([k, val]) => (v.labels as Record<string, unknown>)[k] === val));
  return match?.value ?? 0;
}

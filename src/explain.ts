// `gatehouse explain`: runs the admission stages on a made-up request, with no network and no state change.
import type { IncomingMessage } from 'node:http';
import { decodeJwt } from 'jose';
import { redactQueryToken } from './auth/query-token.js';
import { ManualClock, systemClock } from './clock.js';
import { compilePlan } from './config/compile.js';
import type { GatehouseConfig } from './config/types.js';
import { isProxyError } from './http/errors.js';
import { silentLogger } from './observe/logger.js';
import { Metrics } from './observe/metrics.js';
import { authenticate } from './pipeline/authenticate.js';
import { authorize } from './pipeline/authorize.js';
import { Exchange } from './pipeline/exchange.js';
import { injectIdentity } from './pipeline/inject-identity.js';
import { matchRoute, normalizePath } from './pipeline/match-route.js';
import { headerRecord, sanitizeHeaders } from './pipeline/sanitize-headers.js';
import { MemoryStore } from './rate-limit/memory-store.js';

const CREDENTIAL_HEADERS = new Set(['authorization', 'x-api-key']);
/** An access_token in a query (in any spelling) is a credential on upgrades and a secret anywhere: never printed. */
function redactQuery(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q) + redactQueryToken(url.slice(q));
}

export async function explain(config: GatehouseConfig, method: string, url: string, headers: Array<[string, string]>): Promise<object> {
  // A remote JWKS would need the network: such providers are left out and reported instead.
  const remote = config.auth.jwt.providers.filter((p) => p.jwksUrl);
  const offline: GatehouseConfig = { ...config, auth: { ...config.auth, jwt: { ...config.auth.jwt, providers: config.auth.jwt.providers.filter((p) => !p.jwksUrl) } } };
  const runtime = { clock: systemClock, logger: silentLogger, metrics: new Metrics(), store: new MemoryStore({ maxKeys: 1, clock: new ManualClock() }), upstreamQueues: new Map() };
  const plan = compilePlan(offline, runtime);
  const rawHeaders = headers.flat();
  if (!headers.some(([n]) => n.toLowerCase() === 'host')) rawHeaders.push('Host', 'gatehouse.local');
  const req = { method, url, rawHeaders, headers: {}, socket: { remoteAddress: '127.0.0.1' } } as unknown as IncomingMessage;
  const ex = new Exchange(plan, req, null, 0);
  const out: Record<string, unknown> = { request: { method, url: redactQuery(url) } };
  try {
    ex.incoming = sanitizeHeaders(plan.headers, rawHeaders);
    ex.requestId = 'explain';
    ex.clientIp = '127.0.0.1';
    const q = url.indexOf('?');
    ex.path = normalizePath(q === -1 ? url : url.slice(0, q));
    ex.search = q === -1 ? '' : url.slice(q);
    // As the proxy does for a WebSocket upgrade (http/websocket.ts).
    if (method === 'GET' && ex.incoming.upgrade?.toLowerCase() === 'websocket') ex.asUpgrade();
    ex.route = matchRoute(plan.routes, method, ex.path);
    out.route = { name: ex.route.name, path: ex.route.config.path, auth: ex.route.config.auth, upstream: ex.route.upstream?.config.url ?? null, respond: ex.route.config.respond };
    const credential = describeCredential(ex, remote.map((p) => [p.issuer, p.name] as const));
    out.credential = credential;
    if (credential?.needsNetwork) return out;
    try {
      await authenticate(ex);
    } catch (err) {
      // A 401 is the credential's verdict; other refusals (two credentials, a busy JWKS) say nothing about it.
      if (credential && isProxyError(err) && err.status === 401) credential.verified = false;
      throw err;
    }
    if (credential) credential.verified = true;
    authorize(ex);
    if (ex.identity) {
      const { claims: _claims, ...identity } = ex.identity;
      out.identity = { ...identity, expiresAt: identity.expiresAt === null ? null : new Date(identity.expiresAt).toISOString() };
    }
    out.rateLimits = ex.route.policies.map((p) => {
      const b = p.bucket(ex.identity, ex.clientIp);
      return { policy: p.name, by: p.by, key: b.key, limit: b.limit, windowSeconds: b.windowMs / 1000 };
    });
    if (ex.route.upstream) {
      const upstreamHeaders = headerRecord(injectIdentity(ex));
      // By name with `_` read as `-`: an X_API_Key forwarded as an ordinary header is still a key.
      for (const name in upstreamHeaders) if (CREDENTIAL_HEADERS.has(name.replace(/_/g, '-'))) upstreamHeaders[name] = '[redacted]';
      out.upstreamRequest = { url: ex.route.upstream.config.url.replace(/\/+$/, '') + ex.path + redactQuery(ex.search), headers: { ...upstreamHeaders } };
    }
    out.outcome = 'allowed';
  } catch (err) {
    if (!isProxyError(err)) throw err;
    out.outcome = 'refused';
    out.error = { status: err.status, error: err.code, message: err.message, reason: err.reason };
  } finally {
    await runtime.store.close();
    plan.jwt?.close();
  }
  return out;
}

/** What was presented, never the value itself. `verified` is filled in once authentication ran. */
type CredentialReport = Record<string, unknown> & { needsNetwork?: boolean; verified?: boolean | null };

function describeCredential(ex: Exchange, remoteIssuers: ReadonlyArray<readonly [string, string]>): CredentialReport | null {
  const { authorization, apiKey } = ex.incoming!;
  const query = ex.queryToken;
  if (authorization.length + apiKey.length === 0 && query === undefined) return null;
  const source = apiKey.length ? 'X-API-Key' : authorization.length ? 'Authorization' : 'access_token';
  const value = apiKey[0] ?? (authorization.length ? authorization[0].replace(/^\S+\s+/, '') : query!);
  try {
    const claims = decodeJwt(value);
    const remote = remoteIssuers.find(([iss]) => iss === claims.iss);
    if (remote) {
      return { source, kind: 'jwt', provider: remote[1], claims, verified: null, needsNetwork: true, note: `provider ${remote[1]} uses a remote JWKS; explain makes no network calls, so the signature was not checked` };
    }
    return { source, kind: 'jwt', claims };
  } catch {
    return { source, kind: 'api-key or opaque token' };
  }
}

// Stage: add the verified identity, forwarding headers and request id to the already-sanitized upstream headers.
import type { Identity } from '../auth/identity.js';
import { unmapped } from '../http/client-ip.js';
import type { Exchange } from './exchange.js';
import { CLIENT_ADDRESS_HEADERS } from './sanitize-headers.js';

/**
 * Visible ASCII, with spaces and tabs inside only: anything else could split or smuggle a header, and header
 * parsers trim the edges, so ` admin@corp.example` would reach the upstream as another value than the claim.
 */
const SAFE_VALUE = /^(?:[\x21-\x7e](?:[\t\x20-\x7e]*[\x21-\x7e])?)?$/;

function claimAt(claims: Readonly<Record<string, unknown>>, path: readonly string[]): string | undefined {
  let v: unknown = claims;
  for (const part of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v.join(' ');
  return undefined;
}

/**
 * The identity headers of one identity under one plan's header names, as one flat [name, value, ...] list (one
 * small array per identity: a table of 100,000 keys keeps 100,000 of them). The values were checked when the
 * identity was built (unsafeIdentityField in auth/identity.ts; key ids and provider names are config names).
 */
function identityHeaders(plan: Exchange['plan'], identity: Identity): readonly string[] {
  const names = plan.headers.inject;
  const out = [names.tenant, identity.tenant, names.subject, identity.subject];
  if (identity.role !== null) out.push(names.role, identity.role);
  if (identity.scopes.length) out.push(names.scopes, identity.scopes.join(' '));
  out.push(names.method, identity.method, names.keyId, identity.keyId);
  if (identity.claims) {
    for (const [name, path] of plan.headers.claimHeaders) {
      const value = claimAt(identity.claims, path);
      // An optional extra claim that cannot be a header value is left out rather than refusing the caller.
      if (value !== undefined && SAFE_VALUE.test(value)) out.push(name, value);
    }
  }
  // push grows the backing store ahead (to about twice the length here); a copy is exactly as long, which
  // is 10 MiB less for a table of 100,000 keys.
  return out.slice();
}

const CLIENT_ADDRESS = new Set(CLIENT_ADDRESS_HEADERS);

/**
 * The upstream header list: the injected headers first, then the sanitized client headers. First, because an
 * upstream keeps only so many headers (node:http: the first 1,000) and drops the rest without a word; a client
 * sending a thousand junk headers must not push gatehouse's identity and X-Forwarded-For out of its view. None
 * of the injected names can be among the client's: those are classified as identity, credential or forwarding
 * headers and never kept (sanitize-headers.ts).
 */
export function injectIdentity(ex: Exchange): string[] {
  const { plan } = ex;
  const incoming = ex.incoming!;
  const headers: string[] = [];
  const identity = ex.identity;
  if (identity) {
    // Identities come from the verified-token cache or the key table, so most requests reuse one: its
    // headers are built and checked once per identity and plan.
    const cached = plan.headers.identityHeaders;
    let pairs = cached.get(identity);
    if (pairs === undefined) cached.set(identity, (pairs = identityHeaders(plan, identity)));
    for (let i = 0; i < pairs.length; i++) headers.push(pairs[i]);
  }
  if (plan.config.identity.forwardAuthorization) {
    if (incoming.authorization.length) headers.push('authorization', incoming.authorization[0]);
    if (incoming.apiKey.length) headers.push('x-api-key', incoming.apiKey[0]);
  }
  const peer = unmapped(ex.req.socket.remoteAddress ?? '');
  const trusted = plan.trustsPeer(peer);
  headers.push('x-forwarded-for', trusted && incoming.forwardedFor ? `${incoming.forwardedFor}, ${peer}` : peer);
  headers.push('x-forwarded-proto', (trusted && incoming.forwardedProto) || 'http');
  const host = (trusted && incoming.forwardedHost) || incoming.host;
  if (host) headers.push('x-forwarded-host', host);
  headers.push('x-request-id', ex.requestId);
  const client = incoming.headers;
  // Forwarded, X-Real-IP and kin are kept only when some proxy is trusted (sanitize-headers.ts); from any other peer they go.
  const dropClientAddress = !trusted && incoming.clientAddress;
  for (let i = 0; i < client.length; i += 2) {
    if (dropClientAddress && CLIENT_ADDRESS.has(client[i])) continue;
    headers.push(client[i], client[i + 1]);
  }
  return headers;
}

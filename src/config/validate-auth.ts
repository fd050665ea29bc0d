// Validation of `auth` (JWT providers, API keys, failedAuth) and `identity`.
import { readFileSync } from 'node:fs';
import { resolve, dirname } from 'node:path';
import { isScalar, type Node } from 'yaml';
import { KEY_NAME, KEY_NAME_RULE, unsafeIdentityField } from '../auth/identity.js';
import { jwksFileProblem } from '../auth/jwks-cache.js';
import { validateProviderAlgorithms } from '../auth/jwt-algorithms.js';
import { POSITIVE, TIMER, TIMER_MAX_MS } from './duration.js';
import { MapReader, readString, type ReadContext, record } from './reader.js';
import type { ApiKeyEntry, ApiKeysConfig, FailedAuthConfig, IdentityConfig, JwtProviderConfig } from './types.js';

const KEY_SOURCES = ['jwksUrl', 'jwksFile', 'publicKey', 'secret'] as const;
/** HMAC keys shorter than the hash output are guessable offline; RFC 7518 3.2 requires at least this. */
const MIN_SECRET_BYTES = 32;
/** An API key's `hash` and `id`, wherever keys are read from. */
export const HASH = /^sha256:([0-9a-f]{64})$/;

export function readJwt(cx: ReadContext, auth: MapReader, configFile: string): { providers: JwtProviderConfig[]; cacheSize: number } {
  const jwt = auth.map('jwt');
  const cacheSize = jwt?.int('cacheSize', 10_000, 0, 10_000_000) ?? 10_000;
  const items = jwt?.list('providers') ?? [];
  jwt?.done();
  const providers: JwtProviderConfig[] = [];
  const names = new Set<string>();
  items.forEach((node, i) => {
    const p = MapReader.of(cx, node, `auth.jwt.providers[${i}]`, node);
    if (!p) return;
    const provider = readProvider(cx, p, configFile);
    p.done();
    if (!provider) return;
    if (names.has(provider.name)) cx.issues.at(node, `${p.path}.name: provider "${provider.name}" is defined twice`);
    names.add(provider.name);
    providers.push(provider);
  });
  return { providers, cacheSize };
}

function readProvider(cx: ReadContext, p: MapReader, configFile: string): JwtProviderConfig | undefined {
  const name = p.str('name');
  // Sent as X-Auth-Key-Id for its tokens, like an API key id, and named in routes and metrics: the same rule.
  if (name !== undefined && !KEY_NAME.test(name)) cx.issues.at(p.get('name'), `${p.keyPath('name')}: must be ${KEY_NAME_RULE}`);
  const issuer = p.str('issuer');
  const audience = p.strings('audience', undefined, true);
  const algorithms = p.strings('algorithms');
  const sources = KEY_SOURCES.filter((k) => p.has(k));
  if (sources.length !== 1) {
    cx.issues.at(p.node ?? p.anchor, `${p.path}: set exactly one of ${KEY_SOURCES.join(', ')} (found ${sources.length ? sources.join(', ') : 'none'})`);
  }
  const keys: Partial<JwtProviderConfig> = {};
  for (const source of sources) {
    const value = p.str(source);
    if (value === undefined) continue;
    if (source === 'jwksUrl' && !/^https?:\/\//.test(value)) cx.issues.at(p.get(source), `${p.keyPath(source)}: must be an http(s) URL`);
    if (source === 'jwksFile') {
      keys.jwksFile = resolve(dirname(configFile), value);
      const problem = jwksFileProblem(keys.jwksFile);
      if (problem) cx.issues.at(p.get(source), `${p.keyPath(source)}: ${problem}`);
    }
    else if (source === 'publicKey') keys.publicKey = readPem(cx, p.get(source), p.keyPath(source), value, configFile);
    else if (source === 'secret' && Buffer.byteLength(value) < MIN_SECRET_BYTES) {
      cx.issues.at(p.get(source), `${p.keyPath(source)}: must be at least ${MIN_SECRET_BYTES} bytes`);
    } else keys[source] = value;
  }
  if (audience && audience.length === 0) cx.issues.at(p.get('audience'), `${p.keyPath('audience')}: list at least one audience`);
  const claimsReader = p.map('claims');
  // Defaults are the SPEC example's mapping (section 2: a setting left out takes the example's value).
  const claims = {
    tenant: claimsReader?.str('tenant', 'org_id') ?? 'org_id',
    subject: claimsReader?.str('subject', 'sub') ?? 'sub',
    role: claimsReader?.str('role', 'role') ?? 'role',
    scopes: claimsReader?.str('scopes', 'scope') ?? 'scope',
    plan: claimsReader?.str('plan', 'plan') ?? 'plan',
  };
  claimsReader?.done();
  const clockToleranceMs = p.duration('clockTolerance', 30_000);
  const jwksCooldownMs = p.duration('jwksCooldown', 10_000, TIMER);
  const jwksCacheMaxAgeMs = p.duration('jwksCacheMaxAge', 600_000, { min: 1_000, max: TIMER_MAX_MS });
  const defaultTenant = p.optionalStr('defaultTenant');
  if (!name || !issuer || !audience || !algorithms || sources.length !== 1 || clockToleranceMs === undefined) return undefined;
  if (jwksCooldownMs === undefined || jwksCacheMaxAgeMs === undefined || defaultTenant === undefined) return undefined;
  // A key source already reported as unusable (short secret, unreadable PEM) must not also read as "no key source".
  if (!sources.some((source) => keys[source] !== undefined)) return undefined;
  const provider = { name, issuer, audience, algorithms, ...keys, clockToleranceMs, jwksCooldownMs, jwksCacheMaxAgeMs, claims, defaultTenant };
  // Algorithm confusion is made impossible here, once: secrets only with HS*, public keys and JWKS only asymmetric.
  for (const problem of validateProviderAlgorithms(provider)) {
    const key = problem.startsWith('algorithms') ? 'algorithms' : sources[0];
    cx.issues.at(p.get(key) ?? p.node, `${p.path}.${problem}`);
  }
  return provider;
}

function readPem(cx: ReadContext, node: Node | null, path: string, value: string, configFile: string): string | undefined {
  if (value.includes('-----BEGIN')) return value;
  try {
    return readFileSync(resolve(dirname(configFile), value), 'utf8');
  } catch (err) {
    cx.issues.at(node, `${path}: cannot read public key file (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    return undefined;
  }
}

export function readApiKeys(cx: ReadContext, auth: MapReader, configFile: string): ApiKeysConfig | null {
  if (!auth.has('apiKeys')) return null;
  const a = auth.map('apiKeys');
  if (!a) return null;
  const sources = a.strings('sources', ['authorization', 'x-api-key']) ?? [];
  for (const s of sources) {
    if (s !== 'authorization' && s !== 'x-api-key') cx.issues.at(a.get('sources'), `${a.keyPath('sources')}: "${s}" is not authorization or x-api-key`);
  }
  const file = a.optionalStr('file');
  const keys = readKeyEntries(cx, a.list('keys') ?? [], a.keyPath('keys'));
  a.done();
  return {
    sources: sources.filter((s): s is ApiKeysConfig['sources'][number] => s === 'authorization' || s === 'x-api-key'),
    file: file ? resolve(dirname(configFile), file) : null,
    keys,
  };
}

/** Key entries, from the config or the keys file; duplicate ids and hashes are errors. */
export function readKeyEntries(cx: ReadContext, items: Node[], path: string): ApiKeyEntry[] {
  const out: ApiKeyEntry[] = [];
  const ids = new Set<string>();
  const hashes = new Set<string>();
  items.forEach((node, i) => {
    const k = MapReader.of(cx, node, `${path}[${i}]`, node);
    if (!k) return;
    const id = k.str('id');
    const hashText = k.str('hash');
    const hash = hashText === undefined ? undefined : HASH.exec(hashText.toLowerCase())?.[1];
    if (hashText !== undefined && !hash) cx.issues.at(k.get('hash'), `${k.keyPath('hash')}: must be sha256: followed by 64 hex digits (see gatehouse keys hash)`);
    const tenant = k.str('tenant');
    if (tenant === '') cx.issues.at(k.get('tenant'), `${k.keyPath('tenant')}: must not be empty`);
    const subject = k.str('subject', id ?? '');
    const role = k.optionalStr('role');
    const scopes = k.strings('scopes', [], true);
    if (tenant && subject !== undefined && role !== undefined && scopes) {
      const unsafe = unsafeIdentityField({ tenant, subject, role, scopes });
      const what = unsafe === 'scopes' ? 'each scope must be visible ASCII without spaces' : 'must be visible ASCII, without spaces at either end';
      if (unsafe) cx.issues.at(k.get(unsafe), `${k.keyPath(unsafe)}: ${what} (it is sent as a header value)`);
    }
    const access = k.oneOf('access', ['full', 'read-only'] as const, 'full');
    const plan = k.optionalStr('plan');
    const expiresAt = readTimestamp(cx, k.get('expiresAt'), k.keyPath('expiresAt'));
    const disabled = k.bool('disabled', false);
    k.done();
    if (id !== undefined && !KEY_NAME.test(id)) cx.issues.at(k.get('id'), `${k.keyPath('id')}: must be ${KEY_NAME_RULE}`);
    if (id !== undefined && ids.has(id)) cx.issues.at(k.get('id'), `${k.keyPath('id')}: key id "${id}" is used twice`);
    if (hash && hashes.has(hash)) cx.issues.at(k.get('hash'), `${k.keyPath('hash')}: the same key hash is used twice (key "${id ?? '?'}")`);
    if (id !== undefined) ids.add(id);
    if (hash) hashes.add(hash);
    if (!id || !hash || !tenant || subject === undefined || role === undefined || !scopes || !access) return;
    if (plan === undefined || expiresAt === undefined || disabled === undefined) return;
    out.push({ id, hash, tenant, subject, role, scopes, access, plan, expiresAt, disabled });
  });
  return out;
}

/**
 * An ISO-8601 date (midnight UTC) or date-time with its offset (`Z` or +hh:mm) in ms, else NaN. Date.parse alone
 * would also read "Jan 1 2027" or a date-time without offset, in the local time zone of whichever host reads it.
 */
export function parseTimestamp(text: string): number {
  const m = ISO_TIMESTAMP.exec(text);
  if (!m) return NaN;
  // Date.parse rolls impossible dates and times forward (February 31st is March 3rd, 24:00 the next day).
  const [year, month, day, hour = 0, minute = 0, second = 0] = m.slice(1, 7).map((v) => (v === undefined ? undefined : Number(v))) as number[];
  const date = new Date(Date.UTC(year, month - 1, day));
  if (date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day || hour > 23 || minute > 59 || second > 59) return NaN;
  return Date.parse(text);
}
const ISO_TIMESTAMP = /^(\d{4})-(\d\d)-(\d\d)(?:[Tt ](\d\d):(\d\d)(?::(\d\d)(?:\.\d+)?)?(?:[Zz]|[+-]\d\d:\d\d))?$/;

function readTimestamp(cx: ReadContext, node: Node | null, path: string): number | null | undefined {
  if (node === null) return null;
  const v = cx.scalar(node);
  const ms = v instanceof Date ? v.getTime() : typeof v === 'string' ? parseTimestamp(v) : NaN;
  if (Number.isFinite(ms)) return ms;
  cx.issues.at(node, `${path}: must be an ISO-8601 timestamp such as 2027-01-01T00:00:00Z`);
  return undefined;
}

/** The SPEC example's values, as for every setting left out. */
const FAILED_AUTH_DEFAULTS: FailedAuthConfig = Object.freeze({ limit: 20, windowMs: 60_000 });

export function readFailedAuth(cx: ReadContext, auth: MapReader): FailedAuthConfig | null {
  if (!auth.written('failedAuth')) return null;
  // Written with an empty value (`failedAuth:`), it is on with every default, never silently off.
  if (!auth.has('failedAuth')) return FAILED_AUTH_DEFAULTS;
  const f = auth.map('failedAuth');
  const limit = f?.int('limit', FAILED_AUTH_DEFAULTS.limit, 1, 1_000_000);
  const windowMs = f?.duration('window', FAILED_AUTH_DEFAULTS.windowMs, POSITIVE);
  f?.done();
  return limit && windowMs ? { limit, windowMs } : null;
}

const IDENTITY_DEFAULTS = {
  tenant: 'X-Auth-Tenant',
  subject: 'X-Auth-Subject',
  role: 'X-Auth-Role',
  scopes: 'X-Auth-Scopes',
  method: 'X-Auth-Method',
  keyId: 'X-Auth-Key-Id',
};
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/**
 * Names an identity or claim header cannot take: HTTP framing and hop-by-hop headers (a tenant in Content-Length
 * is a smuggling vector), the credentials, and the headers gatehouse itself sets upstream.
 */
const RESERVED_HEADERS = new Set([
  'host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'te', 'trailer', 'upgrade', 'expect',
  'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'authorization', 'x-api-key',
  'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded', 'x-request-id',
]);
/** How the header stripping compares names (sanitize-headers.ts): case-blind, `_` the same as `-`. */
const headerKey = (name: string) => name.toLowerCase().replace(/_/g, '-');

export function readIdentity(cx: ReadContext, root: MapReader): IdentityConfig {
  const id = root.map('identity');
  const h = id?.map('headers');
  const headers = { ...IDENTITY_DEFAULTS };
  for (const key of Object.keys(IDENTITY_DEFAULTS) as Array<keyof typeof IDENTITY_DEFAULTS>) {
    const name = h?.str(key, IDENTITY_DEFAULTS[key]);
    if (name && HEADER_NAME.test(name)) headers[key] = name;
    else if (name !== undefined) cx.issues.at(h?.get(key), `${h?.keyPath(key)}: not a valid header name`);
  }
  h?.done();
  const claimHeaders = record<string>();
  const ch = id?.map('claimHeaders');
  for (const [name, node, keyNode] of ch?.entries() ?? []) {
    if (!HEADER_NAME.test(name)) cx.issues.at(keyNode, `identity.claimHeaders.${name}: not a valid header name`);
    const claim = node && isScalar(node) ? readString(cx, node, `identity.claimHeaders.${name}`) : undefined;
    if (claim === undefined) cx.issues.at(node ?? keyNode, `identity.claimHeaders.${name}: must be a claim name`);
    else claimHeaders[name] = claim;
  }
  // Every injected header must be one header with one meaning: not reserved, and no two under one name.
  const taken = new Map<string, string>();
  const reserveName = (name: string, path: string, node: Node | null | undefined) => {
    const key = headerKey(name);
    const other = taken.get(key);
    if (RESERVED_HEADERS.has(key)) cx.issues.at(node, `${path}: "${name}" is reserved (HTTP or gatehouse itself sets it)`);
    else if (other) cx.issues.at(node, `${path}: "${name}" is already the name of ${other}`);
    else taken.set(key, path);
  };
  for (const key of Object.keys(IDENTITY_DEFAULTS) as Array<keyof typeof IDENTITY_DEFAULTS>) reserveName(headers[key], `identity.headers.${key}`, h?.get(key) ?? id?.get('headers'));
  for (const [name, , keyNode] of ch?.entries() ?? []) if (HEADER_NAME.test(name)) reserveName(name, `identity.claimHeaders.${name}`, keyNode);
  const stripPrefixes = id?.strings('stripPrefixes', ['X-Auth-']) ?? ['X-Auth-'];
  const forwardAuthorization = id?.bool('forwardAuthorization', false) ?? false;
  id?.done();
  return { headers, claimHeaders, stripPrefixes, forwardAuthorization };
}

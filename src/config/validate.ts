// Validates a parsed config document section by section, collecting every error, into a GatehouseConfig.
import { BlockList, isIP } from 'node:net';
import { isScalar, isSeq, type Node } from 'yaml';
import { TIMER } from './duration.js';
import { MapReader, readString, type ReadContext, record } from './reader.js';
import { readApiKeys, readFailedAuth, readIdentity, readJwt } from './validate-auth.js';
import { readRateLimit } from './validate-rate-limit.js';
import type { GatehouseConfig, RouteAuth, RouteConfig, TrustProxy, UpstreamConfig } from './types.js';
import { checkPattern } from '../pipeline/match-route.js';

// Not CONNECT: a forward proxy's method, which gatehouse answers 501 itself (http/server.ts).
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE'];

export function validate(cx: ReadContext, rootNode: Node | null, file: string): GatehouseConfig | undefined {
  const root = MapReader.of(cx, rootNode, '', rootNode);
  if (!root) return undefined;
  const version = root.int('version', undefined, 1, 1);
  const s = root.map('server');
  const server = {
    host: s?.str('host', '0.0.0.0') ?? '',
    port: s?.int('port', 8080, 0, 65535) ?? 0,
    trustProxy: readTrustProxy(cx, s?.get('trustProxy') ?? null),
    shutdownTimeoutMs: s?.duration('shutdownTimeout', 10_000, TIMER) ?? 0,
    maxHeaderBytes: s?.int('maxHeaderBytes', 16_384, 1024, 1_048_576) ?? 0,
    headersTimeoutMs: 0,
    requestTimeoutMs: s?.duration('requestTimeout', 300_000, TIMER) ?? 0,
    keepAliveTimeoutMs: s?.duration('keepAliveTimeout', 5_000, TIMER) ?? 0,
    sendTimeoutMs: s?.duration('sendTimeout', 60_000, TIMER) ?? 0,
  };
  // node:http refuses a headersTimeout longer than requestTimeout (both on, 0 is off): the default follows a shorter
  // requestTimeout, and a longer one set by hand is a config error rather than a crash at startup.
  const { requestTimeoutMs } = server;
  server.headersTimeoutMs = s?.duration('headersTimeout', requestTimeoutMs > 0 ? Math.min(10_000, requestTimeoutMs) : 10_000, TIMER) ?? 0;
  if (server.headersTimeoutMs > 0 && requestTimeoutMs > 0 && server.headersTimeoutMs > requestTimeoutMs) {
    cx.issues.at(s?.get('headersTimeout'), 'server.headersTimeout: must not be longer than server.requestTimeout');
  }
  s?.done();
  const admin = readAdmin(root);
  const lg = root.map('log');
  const log = { level: lg?.oneOf('level', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const, 'info') ?? 'info' };
  lg?.done();
  const { upstreams, declared } = readUpstreams(cx, root);
  const authReader = root.map('auth');
  const jwt = authReader ? readJwt(cx, authReader, file) : { providers: [], cacheSize: 10_000 };
  const apiKeys = authReader ? readApiKeys(cx, authReader, file) : null;
  const failedAuth = authReader ? readFailedAuth(cx, authReader) : null;
  authReader?.done();
  const identity = readIdentity(cx, root);
  const rateLimit = readRateLimit(cx, root);
  const config: GatehouseConfig = {
    file,
    server,
    admin,
    log,
    upstreams,
    auth: { jwt, apiKeys, failedAuth },
    identity,
    rateLimit,
    routes: [],
  };
  config.routes = readRoutes(cx, root, config, declared);
  root.done();
  return version === undefined ? undefined : config;
}

function readTrustProxy(cx: ReadContext, node: Node | null): TrustProxy {
  if (node === null) return false;
  if (isSeq(node)) {
    const cidrs: string[] = [];
    for (const item of node.items as Node[]) {
      const text = readString(cx, item, 'server.trustProxy[]');
      if (text !== undefined && !validCidr(text)) cx.issues.at(item, `server.trustProxy: "${text}" is not an IP address or CIDR`);
      else if (text !== undefined) cidrs.push(text);
    }
    return cidrs;
  }
  const v = cx.scalar(node);
  if (v === true || v === 'true') return true;
  if (v === false || v === 'false') return false;
  const n = typeof v === 'string' ? Number(v) : v;
  if (typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 100) return n;
  cx.issues.at(node, 'server.trustProxy: must be true, false, a hop count, or a list of CIDRs');
  return false;
}

function validCidr(text: string): boolean {
  const [addr, bits, extra] = text.split('/');
  const family = isIP(addr);
  if (!family || extra !== undefined) return false;
  if (bits === undefined) return true;
  const n = Number(bits);
  if (!/^\d+$/.test(bits) || n > (family === 4 ? 32 : 128)) return false;
  new BlockList().addSubnet(addr, n, family === 4 ? 'ipv4' : 'ipv6');
  return true;
}

function readAdmin(root: MapReader): GatehouseConfig['admin'] {
  if (!root.has('admin')) return null;
  const a = root.map('admin');
  const admin = { host: a?.str('host', '127.0.0.1') ?? '', port: a?.int('port', 9901, 0, 65535) ?? 0 };
  a?.done();
  return admin;
}

/** The valid upstreams, and the names of all declared ones (an invalid upstream is reported once, not again by each route using it). */
function readUpstreams(cx: ReadContext, root: MapReader): { upstreams: Record<string, UpstreamConfig>; declared: Set<string> } {
  const out = record<UpstreamConfig>();
  const declared = new Set<string>();
  for (const [name, node] of root.map('upstreams')?.entries() ?? []) {
    declared.add(name);
    const u = MapReader.of(cx, node, `upstreams.${name}`, node);
    if (!u) continue;
    const url = u.str('url');
    if (url !== undefined && !validUpstreamUrl(url)) cx.issues.at(u.get('url'), `upstreams.${name}.url: must be an http:// or https:// URL without query or credentials`);
    const connectTimeoutMs = u.duration('connectTimeout', 5_000, TIMER);
    const timeoutMs = u.duration('timeout', 30_000, TIMER);
    const keepAlive = u.bool('keepAlive', true);
    // Envoy's circuit-breaker defaults (max_connections, max_pending_requests).
    const maxConnections = u.int('maxConnections', 1024, 1, 65_535);
    const maxPending = u.int('maxPending', 1024, 0, 1_000_000);
    u.done();
    if (url && connectTimeoutMs !== undefined && timeoutMs !== undefined && keepAlive !== undefined && maxConnections !== undefined && maxPending !== undefined) {
      out[name] = { name, url, connectTimeoutMs, timeoutMs, keepAlive, maxConnections, maxPending };
    }
  }
  return { upstreams: out, declared };
}

function validUpstreamUrl(text: string): boolean {
  try {
    const u = new URL(text);
    return (u.protocol === 'http:' || u.protocol === 'https:') && !u.search && !u.hash && !u.username && !u.password;
  } catch {
    return false;
  }
}

function readRoutes(cx: ReadContext, root: MapReader, config: GatehouseConfig, upstreamNames: ReadonlySet<string>): RouteConfig[] {
  const routes: RouteConfig[] = [];
  const names = new Set<string>();
  (root.list('routes') ?? []).forEach((node, i) => {
    const r = MapReader.of(cx, node, `routes[${i}]`, node);
    if (!r) return;
    const name = r.str('name');
    const m = r.map('match');
    const path = m?.str('path');
    const methods = m?.has('methods') ? m.strings('methods') : null;
    m?.done();
    if (path !== undefined) {
      const problem = checkPattern(path);
      if (problem) cx.issues.at(m?.get('path'), `${r.path}.match.path: ${problem}`);
    }
    if (methods?.length === 0) cx.issues.at(m?.get('methods'), `${r.path}.match.methods: must list at least one method (leave it out to match every method)`);
    for (const method of methods ?? []) {
      if (!METHODS.includes(method)) cx.issues.at(m?.get('methods'), `${r.path}.match.methods: "${method}" is not one of ${METHODS.join(', ')} (upper case)`);
    }
    const auth = readRouteAuth(cx, r, config);
    const req = r.map('require');
    const require = { scopes: req?.strings('scopes', []) ?? [], roles: req?.strings('roles', []) ?? [] };
    req?.done();
    const rateLimit = r.strings('rateLimit', []) ?? [];
    const upstream = r.str('upstream', 'default') ?? 'default';
    const respond = r.has('respond') ? (r.oneOf('respond', ['identity'] as const) ?? null) : null;
    r.done();
    if (name !== undefined && names.has(name)) cx.issues.at(r.get('name'), `${r.path}.name: route "${name}" is defined twice`);
    if (name !== undefined) names.add(name);
    for (const policy of rateLimit) {
      const p = config.rateLimit.policies[policy];
      if (!p) cx.issues.at(r.get('rateLimit'), `${r.path}.rateLimit: no policy named "${policy}"`);
      else if (auth?.kind === 'none' && p.by !== 'ip') {
        cx.issues.at(r.get('rateLimit'), `${r.path}.rateLimit: policy "${policy}" is by ${p.by}, but the route has auth: none (only by: ip works without a caller)`);
      }
    }
    if (!respond && !upstreamNames.has(upstream)) cx.issues.at(r.get('upstream') ?? node, `${r.path}.upstream: no upstream named "${upstream}"`);
    if (respond && auth?.kind === 'none') cx.issues.at(r.get('respond'), `${r.path}.respond: identity needs a route with auth`);
    if ((require.scopes.length || require.roles.length) && auth?.kind === 'none') {
      cx.issues.at(r.get('require'), `${r.path}.require: needs a route with auth`);
    }
    if (name && path && methods !== undefined && auth) {
      routes.push({ name, path, methods, auth, require, rateLimit, upstream, respond });
    }
  });
  return routes;
}

function readRouteAuth(cx: ReadContext, r: MapReader, config: GatehouseConfig): RouteAuth | undefined {
  const node = r.get('auth');
  const providers = config.auth.jwt.providers.map((p) => p.name);
  const apiKeysOn = config.auth.apiKeys !== null;
  const words: string[] | undefined = node === null ? ['any'] : isScalar(node) ? [readString(cx, node, `${r.path}.auth`) ?? ''] : r.strings('auth');
  if (!words) return undefined;
  const fail = (message: string): undefined => {
    cx.issues.at(node ?? r.node, `${r.path}.auth: ${message}`);
    return undefined;
  };
  if (words.length === 1 && words[0] === 'none') return { kind: 'none' };
  const one = words.length === 1 ? words[0] : null;
  if (one === 'any' || one === 'jwt' || one === 'api-key') {
    const jwt = one !== 'api-key';
    const keys = one !== 'jwt';
    if (jwt && keys && !providers.length && !apiKeysOn) return fail('no JWT provider and no API keys are configured');
    if (one === 'jwt' && !providers.length) return fail('no JWT provider is configured');
    if (one === 'api-key' && !apiKeysOn) return fail('auth.apiKeys is not configured');
    return { kind: 'some', jwtProviders: jwt && providers.length ? 'all' : [], apiKeys: keys && apiKeysOn };
  }
  const unknown = words.filter((w) => w !== 'api-key' && !providers.includes(w));
  if (unknown.length) return fail(`unknown provider ${unknown.map((w) => `"${w}"`).join(', ')} (use any, none, jwt, api-key or provider names)`);
  if (words.includes('api-key') && !apiKeysOn) return fail('auth.apiKeys is not configured');
  return { kind: 'some', jwtProviders: words.filter((w) => w !== 'api-key'), apiKeys: words.includes('api-key') };
}

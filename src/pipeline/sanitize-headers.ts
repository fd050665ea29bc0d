// Stage: build the upstream header set from the client's: strip identity and hop-by-hop headers before anything is injected.
import { ProxyError } from '../http/errors.js';
import type { Identity } from '../auth/identity.js';
import type { IdentityConfig, TrustProxy } from '../config/types.js';

/** What a header name is to the proxy; decided once per distinct raw name and cached on the plan. */
export enum HeaderKind {
  Keep,
  Drop,
  Authorization,
  ApiKey,
  Connection,
  ForwardedFor,
  ForwardedProto,
  ForwardedHost,
  RequestId,
  Host,
  Upgrade,
  /** A client-address header (X-Real-IP and kin) under trustProxy: kept only when the peer is a trusted proxy. */
  ClientAddress,
  TransferEncoding,
}

interface Classified {
  readonly kind: HeaderKind;
  readonly lower: string;
}

const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect'];
/**
 * Headers in which a proxy tells the next hop who the client is. Upstream frameworks and IP libraries read them
 * before X-Forwarded-For (Go's chi RealIP, npm request-ip, Rails), so a client's own would override the
 * address gatehouse sends: they are believed, like RFC 7239 Forwarded, only from a trusted proxy.
 */
export const CLIENT_ADDRESS_HEADERS: readonly string[] = [
  'forwarded', 'x-real-ip', 'true-client-ip', 'x-client-ip', 'x-cluster-client-ip', 'cf-connecting-ip', 'fastly-client-ip', 'x-forwarded', 'forwarded-for',
];
/**
 * Headers asking the upstream to run another method or path than the one gatehouse matched and authorized
 * (method-override middleware; IIS and old Symfony routing by X-Original-URL): a read-only key could DELETE,
 * a caller of a public route could reach an admin one. Never forwarded.
 */
const OVERRIDE_HEADERS = ['x-http-method-override', 'x-http-method', 'x-method-override', 'x-original-url', 'x-rewrite-url'];
const MAX_CACHED_NAMES = 4096;
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** `_` and `-` are the same to many upstream frameworks (CGI, WSGI, Rack), so they are the same when stripping. */
const canonical = (name: string): string => name.toLowerCase().replace(/_/g, '-');

export class HeaderPlan {
  private readonly cache = new Map<string, Classified>();
  private readonly exact: ReadonlyMap<string, HeaderKind>;
  private readonly strip: ReadonlySet<string>;
  private readonly prefixes: readonly string[];
  /** Lower-case names of the identity headers to inject, and of the claim headers with their claim paths. */
  readonly inject: Readonly<IdentityConfig['headers']>;
  readonly claimHeaders: ReadonlyArray<readonly [name: string, path: readonly string[]]>;
  /** The injected headers of each identity seen, built once (pipeline/inject-identity.ts); dies with the identity. */
  readonly identityHeaders = new WeakMap<Identity, readonly string[]>();

  constructor(identity: IdentityConfig, apiKeyHeader: boolean, readonly trustProxy: boolean) {
    const lower = Object.entries(identity.headers).map(([k, v]) => [k, v.toLowerCase()]);
    this.inject = Object.freeze(Object.fromEntries(lower)) as IdentityConfig['headers'];
    this.claimHeaders = Object.entries(identity.claimHeaders).map(([name, path]) => [name.toLowerCase(), path.split('.')] as const);
    this.strip = new Set([...Object.values(identity.headers), ...Object.keys(identity.claimHeaders)].map(canonical));
    this.prefixes = identity.stripPrefixes.map(canonical);
    const exact = new Map<string, HeaderKind>(HOP_BY_HOP.map((h) => [h, HeaderKind.Drop]));
    exact.set('connection', HeaderKind.Connection);
    exact.set('upgrade', HeaderKind.Upgrade);
    exact.set('transfer-encoding', HeaderKind.TransferEncoding);
    exact.set('authorization', HeaderKind.Authorization);
    if (apiKeyHeader) exact.set('x-api-key', HeaderKind.ApiKey);
    exact.set('x-forwarded-for', HeaderKind.ForwardedFor);
    exact.set('x-forwarded-proto', HeaderKind.ForwardedProto);
    exact.set('x-forwarded-host', HeaderKind.ForwardedHost);
    exact.set('x-request-id', HeaderKind.RequestId);
    exact.set('host', HeaderKind.Host);
    for (const name of OVERRIDE_HEADERS) exact.set(name, HeaderKind.Drop);
    // Client-controlled unless the hop before us is trusted; which peer that is, injectIdentity decides.
    for (const name of CLIENT_ADDRESS_HEADERS) exact.set(name, trustProxy ? HeaderKind.ClientAddress : HeaderKind.Drop);
    this.exact = exact;
  }

  classify(raw: string): Classified {
    const hit = this.cache.get(raw);
    if (hit) return hit;
    const lower = raw.toLowerCase();
    const canon = canonical(lower);
    let kind = this.exact.get(lower) ?? HeaderKind.Keep;
    if (this.strip.has(canon) || this.prefixes.some((p) => canon.startsWith(p))) kind = HeaderKind.Drop;
    // A hop-by-hop, forwarding or credential name spelled with `_` (X_Forwarded_For, X_Request_Id, X_API_Key) is
    // that header to a lenient upstream: the client's value would arrive next to gatehouse's, so it goes.
    else if (kind === HeaderKind.Keep && canon !== lower && this.exact.has(canon)) kind = HeaderKind.Drop;
    const out = { kind, lower };
    if (this.cache.size < MAX_CACHED_NAMES) this.cache.set(raw, out);
    return out;
  }
}

export class SanitizedHeaders {
  /**
   * The headers to forward as one flat [name, value, ...] list (lower-case names, a repeated header once per
   * value, in order), which undici takes as is: no dictionary to build and walk on every request, and a header
   * named __proto__ is just a string.
   */
  readonly headers: string[] = [];
  readonly authorization: string[] = [];
  readonly apiKey: string[] = [];
  forwardedFor: string | undefined = undefined;
  forwardedProto: string | undefined = undefined;
  forwardedHost: string | undefined = undefined;
  requestId: string | undefined = undefined;
  host: string | undefined = undefined;
  upgrade: string | undefined = undefined;
  /** Whether `headers` holds a client-address header (only under trustProxy), for injectIdentity to judge. */
  clientAddress = false;
}

export function sanitizeHeaders(plan: HeaderPlan, raw: readonly string[]): SanitizedHeaders {
  const out = new SanitizedHeaders();
  let connectionTokens: string[] | null = null;
  let transferCodings: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const { kind, lower } = plan.classify(raw[i]);
    const value = raw[i + 1];
    switch (kind) {
      case HeaderKind.Keep:
        out.headers.push(lower, value);
        break;
      case HeaderKind.Authorization:
        out.authorization.push(value);
        break;
      case HeaderKind.ApiKey:
        out.apiKey.push(value);
        break;
      case HeaderKind.Connection:
        for (const token of value.split(',')) (connectionTokens ??= []).push(token.trim().toLowerCase());
        break;
      case HeaderKind.ForwardedFor:
        out.forwardedFor = out.forwardedFor === undefined ? value : `${out.forwardedFor}, ${value}`;
        break;
      case HeaderKind.ForwardedProto:
        out.forwardedProto ??= value;
        break;
      case HeaderKind.ForwardedHost:
        out.forwardedHost ??= value;
        break;
      case HeaderKind.RequestId:
        if (out.requestId !== undefined) throw new ProxyError('bad_request', 'more than one X-Request-Id header', 'malformed_header');
        out.requestId = value;
        break;
      case HeaderKind.Host:
        if (out.host !== undefined) throw new ProxyError('bad_request', 'more than one Host header', 'malformed_header');
        out.host = value;
        break;
      case HeaderKind.Upgrade:
        out.upgrade = value;
        break;
      case HeaderKind.TransferEncoding:
        transferCodings = transferCodings === undefined ? value : `${transferCodings},${value}`;
        break;
      case HeaderKind.ClientAddress:
        out.headers.push(lower, value);
        out.clientAddress = true;
        break;
      default:
        break;
    }
  }
  if (transferCodings !== undefined && transferCodings.trim().toLowerCase() !== 'chunked') refuseTransferCodings(transferCodings);
  if (connectionTokens) {
    // Only headers that would otherwise be kept can be dropped this way; injected ones come later.
    let named: Set<string> | null = null;
    for (const token of connectionTokens) {
      const { kind } = token ? plan.classify(token) : { kind: HeaderKind.Drop };
      if (kind === HeaderKind.Keep || kind === HeaderKind.ClientAddress) (named ??= new Set()).add(token);
    }
    if (named) removeHeaders(out.headers, named);
  }
  return out;
}

/**
 * node:http takes `Transfer-Encoding: gzip, chunked` and hands over the body still gzipped; forwarded with new
 * framing and no word of the gzip, the upstream would read other bytes than the client sent. Only chunked alone
 * is understood here, and RFC 9112 section 6.1 answers any other coding with 501.
 */
function refuseTransferCodings(value: string): void {
  const codings = value.split(',').map((c) => c.trim().toLowerCase()).filter(Boolean);
  if (codings.length === 1 && codings[0] === 'chunked') return;
  throw new ProxyError('not_implemented', 'only the chunked transfer coding is supported', 'unsupported_transfer_coding');
}

/** Takes every header whose (lower-case) name is in `names` out of a flat list, in place. */
export function removeHeaders(list: string[], names: ReadonlySet<string>): void {
  let kept = 0;
  for (let i = 0; i < list.length; i += 2) {
    if (names.has(list[i])) continue;
    list[kept++] = list[i];
    list[kept++] = list[i + 1];
  }
  list.length = kept;
}

/** A flat header list as a null-prototype record (a repeated name becomes an array), for http-proxy-3 and `explain`. */
export function headerRecord(list: readonly string[]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = Object.create(null);
  for (let i = 0; i < list.length; i += 2) {
    const name = list[i];
    const prev = out[name];
    if (prev === undefined) out[name] = list[i + 1];
    else if (typeof prev === 'string') out[name] = [prev, list[i + 1]];
    else prev.push(list[i + 1]);
  }
  return out;
}

export const isValidRequestId = (id: string | undefined): id is string => id !== undefined && REQUEST_ID.test(id);

export const trustsProxy = (trust: TrustProxy): boolean => trust !== false && trust !== 0;

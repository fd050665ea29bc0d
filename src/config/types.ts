// The validated config, as typed values (durations in ms, defaults filled). compile.ts turns it into a Plan.

export type TrustProxy = false | true | number | readonly string[];

export interface ServerConfig {
  host: string;
  port: number;
  trustProxy: TrustProxy;
  shutdownTimeoutMs: number;
  maxHeaderBytes: number;
  /** Node's headersTimeout: the whole request head must arrive within it (slowloris guard). */
  headersTimeoutMs: number;
  /** Node's requestTimeout: the whole request (head and body) must arrive within it; 0 disables. */
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  /** Longest a client may stop reading its answer (gatehouse waiting to write) before it is cut off; 0 disables. */
  sendTimeoutMs: number;
}

export interface AdminConfig {
  host: string;
  port: number;
}

export interface UpstreamConfig {
  name: string;
  url: string;
  connectTimeoutMs: number;
  timeoutMs: number;
  keepAlive: boolean;
  /** Most connections open to this upstream at once; requests past them wait in a queue. */
  maxConnections: number;
  /** Most requests waiting for a connection; past them, 503 at once. */
  maxPending: number;
}

export interface ClaimsMapping {
  tenant: string;
  subject: string;
  role: string;
  scopes: string;
  plan: string;
}

export interface JwtProviderConfig {
  name: string;
  issuer: string;
  audience: readonly string[];
  algorithms: readonly string[];
  /** Exactly one of the four key sources is set. */
  jwksUrl?: string;
  jwksFile?: string;
  /** PEM text (a path in the YAML is read at validation time). */
  publicKey?: string;
  secret?: string;
  clockToleranceMs: number;
  jwksCooldownMs: number;
  jwksCacheMaxAgeMs: number;
  claims: ClaimsMapping;
  defaultTenant: string | null;
}

export type ApiKeySource = 'authorization' | 'x-api-key';

export interface ApiKeyEntry {
  id: string;
  /** Lowercase hex SHA-256 of the whole key, without the `sha256:` prefix. */
  hash: string;
  tenant: string;
  subject: string;
  role: string | null;
  scopes: string[];
  access: 'full' | 'read-only';
  plan: string | null;
  /** Epoch ms or null. */
  expiresAt: number | null;
  disabled: boolean;
}

export interface ApiKeysConfig {
  sources: ApiKeySource[];
  file: string | null;
  keys: ApiKeyEntry[];
}

export interface FailedAuthConfig {
  limit: number;
  windowMs: number;
}

export interface IdentityConfig {
  headers: {
    tenant: string;
    subject: string;
    role: string;
    scopes: string;
    method: string;
    keyId: string;
  };
  claimHeaders: Record<string, string>;
  stripPrefixes: string[];
  forwardAuthorization: boolean;
}

export interface PolicyConfig {
  name: string;
  limit: number;
  windowMs: number;
  by: 'tenant' | 'subject' | 'key' | 'ip';
}

export interface LimitOverride {
  limit: number;
  windowMs: number;
}

export interface RedisConfig {
  url: string;
  keyPrefix: string;
  commandTimeoutMs: number;
  onError: 'allow' | 'deny';
}

export interface RateLimitConfig {
  store: 'memory' | 'redis';
  /** memory store: most keys kept before the least recently used are evicted. */
  maxKeys: number;
  redis: RedisConfig;
  headers: 'both' | 'ietf' | 'legacy' | 'none';
  policies: Record<string, PolicyConfig>;
  /** plan -> policy -> override */
  plans: Record<string, Record<string, LimitOverride>>;
  /** tenant -> policy -> override */
  tenants: Record<string, Record<string, LimitOverride>>;
}

export type RouteAuth =
  | { kind: 'none' }
  | { kind: 'some'; jwtProviders: 'all' | readonly string[]; apiKeys: boolean };

export interface RouteConfig {
  name: string;
  path: string;
  methods: string[] | null;
  auth: RouteAuth;
  require: { scopes: string[]; roles: string[] };
  rateLimit: string[];
  upstream: string;
  respond: 'identity' | null;
}

export interface LogConfig {
  level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
}

export interface GatehouseConfig {
  /** Absolute path of the config file; relative paths in it resolve against its folder. */
  file: string;
  server: ServerConfig;
  admin: AdminConfig | null;
  log: LogConfig;
  upstreams: Record<string, UpstreamConfig>;
  auth: {
    /** cacheSize: verified tokens kept (bounded LRU); 0 disables the cache. */
    jwt: { providers: JwtProviderConfig[]; cacheSize: number };
    apiKeys: ApiKeysConfig | null;
    failedAuth: FailedAuthConfig | null;
  };
  identity: IdentityConfig;
  rateLimit: RateLimitConfig;
  routes: RouteConfig[];
}

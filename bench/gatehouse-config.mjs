// Benchmark fixtures: gatehouse config files, HS256 tokens signed with jose, API keys and their hashes.
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SignJWT } from 'jose';

export const ISSUER = 'https://bench.gatehouse.local/';
export const SECRET = 'bench-secret-0123456789abcdef-0123456789abcdef';
export const BENCH_PATH = '/api/bench';
const secretKey = new TextEncoder().encode(SECRET);

export const sha256 = (text) => createHash('sha256').update(text, 'utf8').digest('hex');

/** A realistic token: tenant, subject, role, scopes, plan and an email forwarded as a claim header. */
export function signToken(i, ttlSeconds = 6 * 3600) {
  return new SignJWT({ org_id: `tenant-${i % 100}`, role: 'member', scope: 'reports:read reports:write', plan: 'pro', email: `user-${i}@example.com` })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuer(ISSUER)
    .setAudience('api')
    .setSubject(`user-${i}`)
    .setIssuedAt()
    .setExpirationTime(`${ttlSeconds}s`)
    .sign(secretKey);
}

export async function signTokens(count) {
  const out = new Array(count);
  for (let i = 0; i < count; i++) out[i] = await signToken(i);
  return out;
}

/** `count` random API keys with their config entries (ids + sha256 hashes, never the key). */
export function makeApiKeys(count, { tenants = 100 } = {}) {
  const keys = new Array(count);
  const entries = new Array(count);
  for (let i = 0; i < count; i++) {
    const key = `ghk_${randomBytes(18).toString('base64url')}`;
    keys[i] = key;
    entries[i] = { id: `key-${i}`, hash: `sha256:${sha256(key)}`, tenant: `tenant-${i % tenants}`, subject: `svc-${i}`, role: 'service', scopes: ['reports:read'] };
  }
  return { keys, entries };
}

/**
 * The gatehouse config of a scenario, written as JSON (valid YAML).
 * auth 'none': forwarding only. auth 'full': a JWT provider and API keys, identity injection, and a
 * rate limit (by `limitBy`) so high it never trips, in the memory or Redis store.
 */
export function writeConfig(dir, name, { port, adminPort, upstreamUrl, auth, store = 'memory', redisUrl, keyEntries = [], keysFile = null, limitBy = 'subject' }) {
  const config = {
    version: 1,
    server: { host: '127.0.0.1', port },
    admin: { host: '127.0.0.1', port: adminPort },
    log: { level: process.env.BENCH_LOG_LEVEL ?? 'info' },
    upstreams: { default: { url: upstreamUrl, keepAlive: true } },
    routes: [{ name: 'api', match: { path: '/api/**' }, auth: auth === 'none' ? 'none' : 'any', ...(auth === 'none' ? {} : { rateLimit: ['standard'] }) }],
  };
  if (auth !== 'none') {
    config.auth = {
      jwt: {
        providers: [
          {
            name: 'bench',
            issuer: ISSUER,
            audience: ['api'],
            algorithms: ['HS256'],
            secret: SECRET,
            claims: { tenant: 'org_id', subject: 'sub', role: 'role', scopes: 'scope', plan: 'plan' },
          },
        ],
      },
      apiKeys: { sources: ['authorization', 'x-api-key'], keys: keyEntries, ...(keysFile ? { file: keysFile } : {}) },
    };
    config.identity = { claimHeaders: { 'X-Auth-Email': 'email' } };
    config.rateLimit = {
      store,
      ...(store === 'redis' ? { redis: { url: redisUrl, keyPrefix: 'gatehouse-bench:', commandTimeout: '250ms', onError: 'deny' } } : {}),
      headers: 'both',
      policies: { standard: { limit: 1_000_000_000, window: '1h', by: limitBy } },
    };
  }
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, JSON.stringify(config, null, 1));
  return file;
}

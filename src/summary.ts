// The short human summary `gatehouse check` prints for a valid config.
import type { GatehouseConfig, RouteConfig } from './config/types.js';
import { displayUrl } from './auth/jwks-cache.js';

function authText(route: RouteConfig): string {
  if (route.auth.kind === 'none') return 'none';
  const parts: string[] = [];
  if (route.auth.jwtProviders === 'all') parts.push('jwt');
  else parts.push(...route.auth.jwtProviders);
  if (route.auth.apiKeys) parts.push('api-key');
  return parts.join('|');
}

export function summarize(config: GatehouseConfig, path: string): string {
  const s = config.server;
  const lines = [`${path}: ok`, `listen ${s.host}:${s.port}${config.admin ? `, admin ${config.admin.host}:${config.admin.port}` : ''}`];
  lines.push(`upstreams (${Object.keys(config.upstreams).length}):`);
  for (const u of Object.values(config.upstreams)) lines.push(`  ${u.name}  ${u.url}  timeout ${u.timeoutMs}ms  connections ${u.maxConnections} + ${u.maxPending} waiting`);
  lines.push(`routes (${config.routes.length}, first match wins):`);
  for (const r of config.routes) {
    const target = r.respond ? `respond ${r.respond}` : `-> ${r.upstream}`;
    const limits = r.rateLimit.length ? `  limits ${r.rateLimit.join(',')}` : '';
    lines.push(`  ${r.name}  ${(r.methods ?? ['*']).join(',')} ${r.path}  auth ${authText(r)}${limits}  ${target}`);
  }
  const providers = config.auth.jwt.providers;
  lines.push(`jwt providers (${providers.length}):`);
  for (const p of providers) {
    const source = p.jwksUrl ? `jwks ${displayUrl(p.jwksUrl)}` : p.jwksFile ? `jwks file ${p.jwksFile}` : p.publicKey ? 'public key' : 'secret';
    lines.push(`  ${p.name}  iss ${p.issuer}  ${p.algorithms.join(',')}  ${source}`);
  }
  const keys = config.auth.apiKeys?.keys ?? [];
  lines.push(`api keys: ${config.auth.apiKeys ? `${keys.length} (${keys.filter((k) => k.disabled).length} disabled)` : 'off'}`);
  const rl = config.rateLimit;
  lines.push(`rate limits (store ${rl.store}, headers ${rl.headers}):`);
  for (const p of Object.values(rl.policies)) lines.push(`  ${p.name}  ${p.limit} per ${p.windowMs / 1000}s by ${p.by}`);
  return lines.join('\n');
}

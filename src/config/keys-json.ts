// A fast path for large keys files written as JSON (valid YAML): the yaml package needs seconds and
// gigabytes for 100,000 entries, JSON.parse a tenth of a second. Any doubt returns null, and the
// caller falls back to the positioned YAML reader, which is the one that reports errors.
import { KEY_NAME, unsafeIdentityField } from '../auth/identity.js';
import type { ApiKeyEntry } from './types.js';
import { HASH, parseTimestamp } from './validate-auth.js';

const FIELDS = new Set(['id', 'hash', 'tenant', 'subject', 'role', 'scopes', 'access', 'plan', 'expiresAt', 'disabled']);

const isText = (v: unknown): v is string => typeof v === 'string' && !v.includes('${');
const optionalText = (v: unknown): v is string | null | undefined => v === undefined || v === null || isText(v);

/** Entries exactly as the YAML reader would return them, or null when the YAML reader must decide. */
export function fastKeyEntries(text: string): ApiKeyEntry[] | null {
  if (!/^\s*\{/.test(text)) return null;
  let root: unknown;
  try {
    root = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof root !== 'object' || root === null || Object.keys(root).some((k) => k !== 'keys')) return null;
  const list = (root as { keys?: unknown }).keys;
  if (!Array.isArray(list)) return null;
  const ids = new Set<string>();
  const hashes = new Set<string>();
  const out: ApiKeyEntry[] = [];
  for (const item of list) {
    const entry = plainEntry(item);
    if (!entry || ids.has(entry.id) || hashes.has(entry.hash)) return null;
    ids.add(entry.id);
    hashes.add(entry.hash);
    out.push(entry);
  }
  return out;
}

function plainEntry(item: unknown): ApiKeyEntry | null {
  if (typeof item !== 'object' || item === null || Array.isArray(item)) return null;
  const e = item as Record<string, unknown>;
  for (const k in e) if (!FIELDS.has(k)) return null;
  const { id, tenant, subject, role, scopes, access, plan, expiresAt, disabled } = e;
  if (!isText(id) || !KEY_NAME.test(id) || !isText(e.hash) || !isText(tenant) || tenant === '') return null;
  const hash = HASH.exec(e.hash.toLowerCase())?.[1];
  if (!hash || !optionalText(subject) || subject === null || !optionalText(role) || !optionalText(plan)) return null;
  const scopeList = scopes === undefined || scopes === null ? [] : isText(scopes) ? [scopes] : scopes;
  if (!Array.isArray(scopeList) || !scopeList.every(isText)) return null;
  if (unsafeIdentityField({ tenant, subject: subject ?? id, role: role ?? null, scopes: scopeList as string[] })) return null;
  if (access !== undefined && access !== null && access !== 'full' && access !== 'read-only') return null;
  if (disabled !== undefined && disabled !== null && typeof disabled !== 'boolean') return null;
  let expires: number | null = null;
  if (expiresAt !== undefined && expiresAt !== null) {
    expires = isText(expiresAt) ? parseTimestamp(expiresAt) : NaN;
    if (!Number.isFinite(expires)) return null;
  }
  return {
    id,
    hash,
    tenant,
    subject: subject ?? id,
    role: role ?? null,
    scopes: scopeList as string[],
    access: (access ?? 'full') as ApiKeyEntry['access'],
    plan: plan ?? null,
    expiresAt: expires,
    disabled: disabled ?? false,
  };
}

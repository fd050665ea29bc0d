// Bucket keys of the rate-limit stage: one bucket per caller of the policy's dimension, never shared across tenants.
import t from 'tap';
import type { Identity } from '../../src/auth/identity.js';
import type { PolicyConfig, RateLimitConfig } from '../../src/config/types.js';
import { compilePolicy } from '../../src/pipeline/rate-limit.js';

const identity = (over: Partial<Identity>): Identity => ({
  tenant: 'acme',
  subject: 'alice',
  role: null,
  scopes: [],
  plan: null,
  method: 'jwt',
  keyId: 'sso',
  expiresAt: null,
  readOnly: false,
  claims: null,
  ...over,
});

const limits = { plans: {}, tenants: {} } as unknown as RateLimitConfig;
const keyOf = (by: PolicyConfig['by'], who: Identity | null, ip = '10.0.0.1') =>
  compilePolicy({ name: 'p', limit: 10, windowMs: 60_000, by }, limits).bucket(who, ip).key;

t.test('by: key separates JWT callers by provider, tenant and subject', async (t) => {
  const acmeAlice = keyOf('key', identity({}));
  t.not(acmeAlice, keyOf('key', identity({ tenant: 'globex' })), 'globex/alice has her own bucket');
  t.not(acmeAlice, keyOf('key', identity({ keyId: 'other-idp' })), 'so does alice of another provider');
  t.equal(acmeAlice, keyOf('key', identity({ role: 'admin', scopes: ['x'] })), 'role and scopes do not matter');
  t.not(keyOf('key', identity({ method: 'api-key', keyId: 'k1' })), keyOf('key', identity({ method: 'api-key', keyId: 'k2' })), 'API keys by id');
  t.equal(keyOf('key', identity({ method: 'api-key', keyId: 'k1' })), keyOf('key', identity({ method: 'api-key', keyId: 'k1', tenant: 'globex' })));
});

t.test('by: subject is namespaced by tenant, and no separator in a value can make two callers share a bucket', async (t) => {
  t.not(keyOf('subject', identity({})), keyOf('subject', identity({ tenant: 'globex' })));
  t.not(keyOf('subject', identity({ tenant: 'a/b', subject: 'c' })), keyOf('subject', identity({ tenant: 'a', subject: 'b/c' })));
  t.not(keyOf('key', identity({ tenant: 'a/b', subject: 'c' })), keyOf('key', identity({ tenant: 'a', subject: 'b/c' })));
  t.not(keyOf('key', identity({ keyId: 'x/1', tenant: 'a' })), keyOf('key', identity({ keyId: 'x', tenant: '1/a' })));
});

t.test('by: tenant and ip', async (t) => {
  t.equal(keyOf('tenant', identity({ subject: 'bob' })), keyOf('tenant', identity({})), 'one bucket per tenant');
  t.not(keyOf('tenant', identity({ tenant: 'globex' })), keyOf('tenant', identity({})));
  t.not(keyOf('ip', null, '10.0.0.1'), keyOf('ip', null, '10.0.0.2'));
  t.match(keyOf('ip', null), /^p:ip:/, 'keys are prefixed by policy and dimension');
});

// Assertions on the answers gatehouse produces itself (SPEC section 6): status, code, challenge, no echoed secret.
import type { Test } from 'tap';
import type { Answer } from './harness.js';

/** The exact WWW-Authenticate values of SPEC section 6. */
export const CHALLENGE = {
  missing: 'Bearer realm="gatehouse"',
  invalid: 'Bearer realm="gatehouse", error="invalid_token"',
  scope: 'Bearer realm="gatehouse", error="insufficient_scope"',
} as const;

const CHALLENGE_BY_CODE: Record<string, string | undefined> = {
  missing_credentials: CHALLENGE.missing,
  invalid_token: CHALLENGE.invalid,
  token_expired: CHALLENGE.invalid,
  insufficient_scope: CHALLENGE.scope,
};

const STATUS_BY_CODE: Record<string, number> = {
  bad_request: 400,
  missing_credentials: 401,
  invalid_token: 401,
  token_expired: 401,
  insufficient_scope: 403,
  rate_limit_exceeded: 429,
  service_unavailable: 503,
};

/**
 * Asserts a refusal with `code`: its status, the SPEC JSON body, the challenge of that code (none for
 * codes without one), and that no `secrets` (keys, tokens) appear anywhere in the body.
 */
export function assertRefused(t: Test, answer: Answer, code: string, secrets: readonly string[] = []): void {
  t.equal(answer.status, STATUS_BY_CODE[code], `status of ${code}`);
  t.equal(answer.headers['content-type'], 'application/json', 'JSON body');
  t.match(answer.json, { error: code, status: STATUS_BY_CODE[code], message: String, request_id: String }, 'SPEC error body');
  t.equal(answer.headers['www-authenticate'], CHALLENGE_BY_CODE[code], `WWW-Authenticate of ${code}`);
  for (const secret of secrets) t.notOk(answer.text.includes(secret), 'the body does not echo the credential');
}

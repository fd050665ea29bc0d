// Finds the one credential a request carries (SPEC section 3), without verifying it.
import { ProxyError } from '../http/errors.js';
import type { Credential } from './authenticator.js';
import { looksLikeJwt } from './jwt.js';

export interface CredentialSources {
  /** API keys accepted in `Authorization: Bearer|Api-Key`. */
  readonly authorization: boolean;
  /** API keys accepted in `X-API-Key`. */
  readonly xApiKey: boolean;
}

/** SPEC section 3: a request carries at most one credential, whichever route it is for. */
export const twoCredentials = () =>
  new ProxyError('bad_request', 'send exactly one credential (Authorization, X-API-Key or access_token)', 'two_credentials');

const malformed = (what: string) => new ProxyError('bad_request', `malformed ${what} header`, 'malformed_header');

/**
 * @param authorization every Authorization value sent
 * @param apiKey every X-API-Key value sent (only collected when that source is enabled)
 * @param queryToken `?access_token=` of an Upgrade request, if any
 */
export function findCredential(
  authorization: readonly string[],
  apiKey: readonly string[],
  queryToken: string | undefined,
  sources: CredentialSources,
): Credential | null {
  const count = authorization.length + apiKey.length + (queryToken === undefined ? 0 : 1);
  if (count === 0) return null;
  if (count > 1) throw twoCredentials();
  if (apiKey.length) {
    const key = apiKey[0];
    if (!key) throw malformed('X-API-Key');
    return { kind: 'api-key', key };
  }
  if (queryToken !== undefined) return bearer(queryToken, sources, 'access_token');
  const value = authorization[0];
  const space = value.indexOf(' ');
  if (space <= 0) throw malformed('Authorization');
  const scheme = value.slice(0, space).toLowerCase();
  const token = value.slice(space + 1).trimStart();
  if (!token) throw malformed('Authorization');
  if (scheme === 'bearer') return bearer(token, sources, 'Authorization');
  if (scheme === 'api-key') {
    if (!sources.authorization) throw new ProxyError('invalid_token', 'API keys are not accepted in the Authorization header', 'key_source_disabled');
    return { kind: 'api-key', key: token };
  }
  throw new ProxyError('invalid_token', 'unsupported Authorization scheme (use Bearer or Api-Key)', 'unsupported_scheme');
}

function bearer(token: string, sources: CredentialSources, where: string): Credential {
  if (!token) throw malformed(where);
  if (looksLikeJwt(token)) return { kind: 'jwt', token };
  if (!sources.authorization) throw new ProxyError('invalid_token', 'the bearer token is not a well-formed JWT', 'malformed');
  return { kind: 'api-key', key: token };
}

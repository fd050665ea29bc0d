// The contract every credential verifier implements (JWT providers, API keys).
import type { Identity } from './identity.js';

/** A credential as found on the request, before verification. */
export type Credential =
  | { readonly kind: 'jwt'; readonly token: string }
  | { readonly kind: 'api-key'; readonly key: string };

export interface Authenticator {
  readonly kind: 'jwt' | 'api-key';
  /**
   * Verifies the credential and returns the caller's identity.
   * Throws ProxyError('invalid_token' | 'token_expired') on failure; never echoes the credential.
   */
  authenticate(credential: Credential): Promise<Identity> | Identity;
  /** True once the authenticator can verify (e.g. a JWKS was fetched at least once). */
  ready(): boolean;
  /** Stops timers and watchers. */
  close(): void;
}

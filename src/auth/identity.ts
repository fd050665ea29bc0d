// Who the caller is, whatever credential proved it. Every authenticator resolves to this.
export interface Identity {
  readonly tenant: string;
  readonly subject: string;
  readonly role: string | null;
  readonly scopes: readonly string[];
  readonly plan: string | null;
  readonly method: 'jwt' | 'api-key';
  /** API key id, or JWT provider name. */
  readonly keyId: string;
  /** Epoch milliseconds, or null when the credential never expires. */
  readonly expiresAt: number | null;
  /** read-only API keys may only use GET, HEAD and OPTIONS. */
  readonly readOnly: boolean;
  /** The verified JWT payload (for claimHeaders); null for API keys. */
  readonly claims: Readonly<Record<string, unknown>> | null;
}

// Stage: find the request's one credential and verify it with the authenticator of its kind.
import { findCredential, twoCredentials } from '../auth/credential.js';
import type { Identity } from '../auth/identity.js';
import { addressBlock } from '../http/client-ip.js';
import { isProxyError, ProxyError } from '../http/errors.js';
import type { Exchange } from './exchange.js';

const notAccepted = (what: string) => new ProxyError('invalid_token', `${what} are not accepted on this route`, 'credential_kind_not_accepted');

/** Sets ex.identity; synchronous when the authenticator answers directly (API keys, a cached JWT). */
export function authenticate(ex: Exchange): void | Promise<void> {
  const route = ex.route!;
  if (route.auth.kind === 'none') {
    const { authorization, apiKey } = ex.incoming!;
    if (authorization.length + apiKey.length > 1) throw twoCredentials();
    return;
  }
  const { plan } = ex;
  const block = addressBlock(ex.clientIp);
  plan.failedAuth?.check(block);
  let identity: Identity | Promise<Identity>;
  try {
    identity = verify(ex);
  } catch (err) {
    throw refused(ex, block, err);
  }
  if (!(identity instanceof Promise)) {
    ex.identity = identity;
    return;
  }
  return identity.then(
    (verified) => {
      ex.identity = verified;
    },
    (err: unknown) => {
      throw refused(ex, block, err);
    },
  );
}

/** Counts a refused credential (and a 401 against the client's address block); returns the error to throw. */
function refused(ex: Exchange, block: string, err: unknown): unknown {
  if (isProxyError(err)) {
    ex.plan.runtime.metrics.authFailures.inc({ reason: err.reason });
    if (err.status === 401) ex.plan.failedAuth?.recordFailure(block);
  }
  return err;
}

function verify(ex: Exchange): Identity | Promise<Identity> {
  const { plan } = ex;
  const route = ex.route!;
  const auth = route.auth.kind === 'some' ? route.auth : null;
  const incoming = ex.incoming!;
  const credential = findCredential(incoming.authorization, incoming.apiKey, ex.queryToken, plan.sources);
  if (!credential) throw new ProxyError('missing_credentials', 'this route needs a JWT or an API key', 'missing_credentials');
  if (credential.kind === 'api-key') {
    if (!auth?.apiKeys || !plan.apiKeys) throw notAccepted('API keys');
    return plan.apiKeys.authenticate(credential);
  }
  const jwtAllowed = auth && (auth.jwtProviders === 'all' || auth.jwtProviders.length > 0);
  if (!jwtAllowed || !plan.jwt) throw notAccepted('JWTs');
  const identity = plan.jwt.authenticate(credential, route.jwtProviders);
  return identity instanceof Promise ? identity.then((verified) => acceptedIssuer(ex, verified)) : acceptedIssuer(ex, identity);
}

function acceptedIssuer(ex: Exchange, identity: Identity): Identity {
  const providers = ex.route!.jwtProviders;
  if (providers && !providers.has(identity.keyId)) throw notAccepted('tokens of this issuer');
  return identity;
}

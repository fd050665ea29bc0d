// Stage: the identity must hold every required scope, one of the required roles, and write access if writing
// (any non-read method, or a WebSocket).
import { ProxyError } from '../http/errors.js';
import type { Exchange } from './exchange.js';

const READ_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export function authorize(ex: Exchange): void {
  const identity = ex.identity;
  if (!identity) return;
  const route = ex.route!;
  if (identity.readOnly) {
    if (!READ_METHODS.has(ex.req.method!)) throw new ProxyError('insufficient_scope', 'this API key is read-only (GET, HEAD and OPTIONS only)', 'read_only_key');
    // The upgrade is a GET, but the tunnel it opens carries messages both ways that gatehouse cannot see.
    if (ex.upgrade) throw new ProxyError('insufficient_scope', 'this API key is read-only: it may not open a WebSocket, which carries writes too', 'read_only_key');
  }
  for (const scope of route.requireScopes) {
    if (!identity.scopes.includes(scope)) throw new ProxyError('insufficient_scope', `this route needs the scope ${scope}`, 'missing_scope');
  }
  if (route.requireRoles && (identity.role === null || !route.requireRoles.has(identity.role))) {
    throw new ProxyError('insufficient_scope', `this route needs one of the roles ${[...route.requireRoles].join(', ')}`, 'missing_role');
  }
}

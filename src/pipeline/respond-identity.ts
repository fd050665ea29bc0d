// Stage for `respond: identity` routes: gatehouse answers with the caller's identity (SPEC section 7).
import type { Exchange } from './exchange.js';

export function respondIdentity(ex: Exchange): void {
  const id = ex.identity!;
  const body = JSON.stringify({
    authenticated: true,
    tenant: id.tenant,
    subject: id.subject,
    role: id.role,
    scopes: id.scopes,
    plan: id.plan,
    method: id.method,
    key_id: id.keyId,
    expires_at: id.expiresAt === null ? null : new Date(id.expiresAt).toISOString(),
  });
  ex.status = 200;
  ex.res!.writeHead(200, {
    ...ex.responseHeaders,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'x-request-id': ex.requestId,
  });
  ex.res!.end(body);
}

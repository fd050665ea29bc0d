// Upgrade requests (WebSocket and others): the same admission stages as HTTP, then a two-way tunnel (http-proxy-3).
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { createProxyServer } from 'http-proxy-3';
import { twoCredentials } from '../auth/credential.js';
import type { Plan } from '../config/compile.js';
import { Exchange } from '../pipeline/exchange.js';
import { injectIdentity } from '../pipeline/inject-identity.js';
import { headerRecord } from '../pipeline/sanitize-headers.js';
import { admit, fail, logAccess } from '../pipeline/pipeline.js';
import { isProxyError, ProxyError, rejectOnSocket } from './errors.js';

const tunnels = createProxyServer({ ws: true, xfwd: false, changeOrigin: false });
tunnels.on('error', (_err: Error, _req: IncomingMessage, target: unknown) => {
  const socket = target as Socket;
  if (socket && 'writable' in socket) rejectOnSocket(socket, new ProxyError('bad_gateway', 'the upstream refused the upgrade', 'upstream_error'));
});

/** Moves `?access_token=` out of the query: browsers cannot set headers on a WebSocket. */
function takeQueryToken(ex: Exchange): void {
  if (!ex.search.includes('access_token')) return;
  const params = new URLSearchParams(ex.search.slice(1));
  const tokens = params.getAll('access_token');
  if (tokens.length > 1) throw twoCredentials();
  if (tokens.length === 0) return;
  ex.queryToken = tokens[0];
  params.delete('access_token');
  const rest = params.toString();
  ex.search = rest ? `?${rest}` : '';
}

export function handleUpgrade(plan: Plan, req: IncomingMessage, socket: Socket, head: Buffer): void {
  const ex = new Exchange(plan, req, null, performance.now());
  socket.on('error', () => socket.destroy());
  void (async () => {
    try {
      // The token must leave the query before authentication reads it and before anything logs the URL.
      const original = req.url ?? '';
      const q = original.indexOf('?');
      ex.search = q === -1 ? '' : original.slice(q);
      takeQueryToken(ex);
      req.url = (q === -1 ? original : original.slice(0, q)) + ex.search;
      await admit(ex);
      if (!ex.route!.upstream) throw new ProxyError('bad_request', 'this route does not accept upgrades', 'upgrade_not_supported');
      const headers = headerRecord(injectIdentity(ex));
      headers.connection = 'Upgrade';
      headers.upgrade = ex.incoming!.upgrade ?? 'websocket';
      req.headers = headers as IncomingMessage['headers'];
      req.url = ex.path + ex.search;
      const upstream = ex.route!.upstream;
      ex.status = 101;
      tunnels.ws(req, socket, head, { target: upstream.config.url });
    } catch (err) {
      fail(ex, err);
      const error = isProxyError(err) ? err : new ProxyError('internal_error', 'gatehouse failed to handle the request');
      rejectOnSocket(socket, error, ex.requestId, ex.responseHeaders ?? {});
    }
    logAccess(ex);
  })();
}

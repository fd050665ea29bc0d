// The state of one request as it moves through the pipeline; one object, fixed shape.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Identity } from '../auth/identity.js';
import { takeQueryToken } from '../auth/query-token.js';
import type { CompiledRoute, Plan } from '../config/compile.js';
import type { ProxyError } from '../http/errors.js';
import type { SanitizedHeaders } from './sanitize-headers.js';

/** Where a ServerResponse keeps its Exchange: node reports a request timeout per socket, not per request. */
const EXCHANGE = Symbol('gatehouse.exchange');

/** The Exchange of the response a socket is answering, if gatehouse's pipeline is handling one. */
export function exchangeOf(res: ServerResponse): Exchange | undefined {
  return (res as ServerResponse & { [EXCHANGE]?: Exchange })[EXCHANGE];
}

export class Exchange {
  requestId = '';
  clientIp = '';
  /** Path as matched and forwarded (normalized), and the query string with its `?` (or ''). */
  path = '';
  search = '';
  route: CompiledRoute | null = null;
  incoming: SanitizedHeaders | null = null;
  identity: Identity | null = null;
  /** Headers gatehouse adds to its answer, whoever produces it (rate-limit headers). */
  responseHeaders: Record<string, string> | null = null;
  upstreamMs: number | null = null;
  status = 0;
  /** Why gatehouse refused or failed the request, for the access log. */
  reason: string | null = null;
  /** A WebSocket upgrade (see `asUpgrade`): admitted like a GET, then a tunnel both ways. */
  upgrade = false;
  /** `?access_token=` of an Upgrade request, removed from `search` before forwarding. */
  queryToken: string | undefined = undefined;
  /**
   * The error node:http reported on the connection while this request was in the pipeline (the request took
   * longer than `requestTimeout` to arrive), answered on the socket: what the client got, so what the log says.
   */
  connectionError: ProxyError | null = null;
  /**
   * Set by the forward stage while the request is on its way: given up as if the client had left (the answer went
   * out on the socket instead), whether it waits in line, connects, or runs.
   */
  cancelForwarding: (() => void) | null = null;

  constructor(
    readonly plan: Plan,
    readonly req: IncomingMessage,
    /** null for Upgrade requests, which answer on the raw socket. */
    readonly res: ServerResponse | null,
    readonly started: number,
  ) {
    if (res !== null) (res as ServerResponse & { [EXCHANGE]?: Exchange })[EXCHANGE] = this;
  }

  /**
   * Marks a WebSocket upgrade, whose credential may come as `?access_token=` (browsers cannot set headers on a
   * WebSocket): the token moves from `search` to `queryToken`, before authentication reads it or anything logs it.
   */
  asUpgrade(): void {
    this.upgrade = true;
    const taken = takeQueryToken(this.search);
    this.queryToken = taken.token;
    this.search = taken.search;
  }
}

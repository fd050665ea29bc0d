// The state of one request as it moves through the pipeline; one object, fixed shape.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Identity } from '../auth/identity.js';
import { takeQueryToken } from '../auth/query-token.js';
import type { CompiledRoute, Plan } from '../config/compile.js';
import type { SanitizedHeaders } from './sanitize-headers.js';

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

  constructor(
    readonly plan: Plan,
    readonly req: IncomingMessage,
    /** null for Upgrade requests, which answer on the raw socket. */
    readonly res: ServerResponse | null,
    readonly started: number,
  ) {}

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

// Stage: refuse ambiguous paths, then find the first route whose pattern and method match.
import { ProxyError } from '../http/errors.js';

/** A compiled path pattern: `*` is one segment, a trailing `**` the rest of the path (zero or more segments). */
export type PathMatcher = (path: string) => boolean;

const LITERAL = /^[A-Za-z0-9\-._~!$&'()+,=:@]*$/;

/** Why a route pattern is unusable, or null when it is fine. */
export function checkPattern(pattern: string): string | null {
  if (!pattern.startsWith('/')) return 'must start with /';
  const segments = pattern.slice(1).split('/');
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i];
    if (s === '**' && i !== segments.length - 1) return '** may only be the last segment';
    if (s === '*' || s === '**') continue;
    if (s === '.' || s === '..') return 'dot segments never match (such paths are refused)';
    if (s === '' && i !== segments.length - 1) return 'empty segments (//) never match (such paths are refused)';
    if (!LITERAL.test(s) || s.includes('*')) return `segment "${s}" has characters a route cannot match (use * and ** as whole segments)`;
  }
  return null;
}

export function compilePattern(pattern: string): PathMatcher {
  const segments = pattern.slice(1).split('/');
  if (!segments.includes('*') && !segments.includes('**')) return (path) => path === pattern;
  const rest = segments[segments.length - 1] === '**';
  const fixed = rest ? segments.slice(0, -1) : segments;
  const body = fixed.map((s) => (s === '*' ? '/[^/]+' : '/' + s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join('');
  const re = new RegExp(`^${body}${rest ? '(?:/.*)?' : ''}$`);
  return (path) => re.test(path);
}

const SUSPECT = /[%\\#;]|\/\.|\/\/|\0/;
const PERCENT = /%([0-9A-Fa-f]{2})/g;
/** Percent-encoded characters that decode to a path separator, a dot or NUL: never allowed. */
const FORBIDDEN_ESCAPES = new Set(['2f', '5c', '2e', '00']);
const UNRESERVED = /[A-Za-z0-9\-_~]/;
/** `..%3Bx` is `..` to servers that decode before stripping path parameters (raw `;` is refused outright). */
const DOT_WITH_PARAMS = /^\.\.?%3B/i;

function badPath(message: string): ProxyError {
  return new ProxyError('bad_request', message, 'ambiguous_path');
}

/**
 * Returns the path to match and forward, or throws 400 for an ambiguous one.
 * Percent-encoded unreserved characters (RFC 3986 2.3) are decoded, so `/%61pi` cannot dodge a rule for `/api`.
 */
export function normalizePath(path: string): string {
  if (path.charCodeAt(0) !== 47 /* / */) throw badPath('the request path must start with /');
  if (!SUSPECT.test(path)) return path;
  if (path.includes('\\')) throw badPath('the request path contains a backslash');
  if (path.includes('\0')) throw badPath('the request path contains NUL');
  // Never part of a request target: parsers that drop the "fragment" (WHATWG URL, url.parse) see a shorter path
  // than the one matched here, so `/admin#/x` would reach /admin by another route's rules.
  if (path.includes('#')) throw badPath('the request path contains #');
  // Path parameters: find-my-way cuts the path at `;`, Tomcat and Spring strip them from each segment, others keep
  // them; `/admin;x` is /admin to some upstreams and not to this matcher. An encoded %3B stays data everywhere.
  if (path.includes(';')) throw badPath('the request path contains ; (path parameters)');
  let out = path;
  if (path.includes('%')) {
    if (/%(?![0-9A-Fa-f]{2})/.test(path)) throw badPath('the request path has a malformed percent-encoding');
    out = path.replace(PERCENT, (all, hex: string) => {
      if (FORBIDDEN_ESCAPES.has(hex.toLowerCase())) throw badPath('the request path contains an encoded /, \\, . or NUL');
      const ch = String.fromCharCode(parseInt(hex, 16));
      return UNRESERVED.test(ch) ? ch : all.toUpperCase();
    });
  }
  const segments = out.split('/');
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i];
    if (s === '.' || s === '..' || DOT_WITH_PARAMS.test(s)) throw badPath('the request path contains a . or .. segment');
    // An empty segment other than a trailing slash: upstreams often merge `//`, so `//admin` could reach `/admin`.
    if (s === '' && i !== segments.length - 1) throw badPath('the request path contains an empty segment (//)');
  }
  return out;
}

export interface Matchable {
  readonly name: string;
  readonly matches: PathMatcher;
  /** Upper-case methods, or null for any. */
  readonly methods: ReadonlySet<string> | null;
}

export function matchRoute<R extends Matchable>(routes: readonly R[], method: string, path: string): R {
  for (const route of routes) {
    if (route.matches(path) && (route.methods === null || route.methods.has(method))) return route;
  }
  throw new ProxyError('not_found', 'no route matches this method and path', 'no_route');
}

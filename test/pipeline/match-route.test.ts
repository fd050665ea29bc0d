import t from 'tap';
import { checkPattern, compilePattern, matchRoute, normalizePath, type Matchable } from '../../src/pipeline/match-route.js';
import { ProxyError } from '../../src/http/errors.js';

const route = (name: string, path: string, methods?: string[]): Matchable => ({
  name,
  matches: compilePattern(path),
  methods: methods ? new Set(methods) : null,
});

t.test('path patterns: literal, * (one segment), ** (zero or more segments), trailing slash', async (t) => {
  const cases: [pattern: string, path: string, matches: boolean][] = [
    ['/api/auth/login', '/api/auth/login', true],
    ['/api/auth/login', '/api/auth/login/', false],
    ['/api/auth/login', '/api/auth/logins', false],
    ['/api/auth/login', '/API/auth/login', false],
    ['/api/auth/login', '/api/auth', false],
    ['/', '/', true],
    ['/', '/a', false],
    ['/api/*', '/api/x', true],
    ['/api/*', '/api/x.json', true],
    ['/api/*', '/api/', false],
    ['/api/*', '/api', false],
    ['/api/*', '/api/x/y', false],
    ['/api/*/items', '/api/42/items', true],
    ['/api/*/items', '/api/42/items/', false],
    ['/api/*/items', '/api/items', false],
    ['/api/*/', '/api/42/', true],
    ['/api/*/', '/api/42', false],
    ['/api/**', '/api', true],
    ['/api/**', '/api/', true],
    ['/api/**', '/api/a', true],
    ['/api/**', '/api/a/b/c', true],
    ['/api/**', '/apix', false],
    ['/api/**', '/ap', false],
    ['/api/**', '/', false],
    ['/api/*/**', '/api/a', true],
    ['/api/*/**', '/api/a/b/c', true],
    ['/api/*/**', '/api', false],
    ['/**', '/', true],
    ['/**', '/anything/at/all', true],
    ['/v1.0/a+b', '/v1.0/a+b', true],
    ['/v1.0/a+b', '/v1x0/aab', false],
    ["/$(x)/'!", "/$(x)/'!", true],
  ];
  for (const [pattern, path, expected] of cases) {
    t.equal(compilePattern(pattern)(path), expected, `${pattern} ${expected ? 'matches' : 'does not match'} ${path}`);
  }
});

t.test('routes: first match wins, methods filter, no match is 404 not_found', async (t) => {
  const routes = [
    route('login', '/api/auth/login', ['POST']),
    route('reports', '/api/reports/**'),
    route('read-api', '/api/**', ['GET', 'HEAD']),
    route('write-api', '/api/**', ['POST', 'PUT']),
  ];
  const cases: [method: string, path: string, name: string | null][] = [
    ['POST', '/api/auth/login', 'login'],
    ['GET', '/api/auth/login', 'read-api'],
    ['DELETE', '/api/auth/login', null],
    ['GET', '/api/reports', 'reports'],
    ['DELETE', '/api/reports/1', 'reports'],
    ['GET', '/api/users', 'read-api'],
    ['HEAD', '/api/users', 'read-api'],
    ['PUT', '/api/users', 'write-api'],
    ['PATCH', '/api/users', null],
    ['GET', '/other', null],
    ['GET', '/', null],
  ];
  for (const [method, path, name] of cases) {
    if (name) {
      t.equal(matchRoute(routes, method, path).name, name, `${method} ${path} -> ${name}`);
    } else {
      t.throws(() => matchRoute(routes, method, path), { code: 'not_found', status: 404, reason: 'no_route' }, `${method} ${path} -> 404`);
    }
  }
});

t.test('ambiguous request paths are refused with 400 bad_request', async (t) => {
  const refused: string[] = [
    '/..',
    '/.',
    '/a/..',
    '/a/.',
    '/./a',
    '/a/../b',
    '/a/./b',
    '/%2e%2e/admin',
    '/%2E%2E/admin',
    '/%2e%2E/admin',
    '/api/%2e%2e/admin',
    '/api/.%2e/admin',
    '/api/%2e./admin',
    '/%2e',
    '/%2E',
    '/a%2eb',
    '/a%2fb',
    '/a%2Fb',
    '/api%2F..%2Fadmin',
    '/a%5cb',
    '/a%5Cb',
    '/a%00',
    '/a\0b',
    '/a\\b',
    '/api\\..\\admin',
    '//',
    '//admin',
    '/a//b',
    '/a///',
    'a/b',
    '',
    '*',
    'http://x/',
    'http://x/api',
    '/a%zz',
    '/a%',
    '/a%2',
    '/%u002e%u002e/admin',
    '/ok/%2e%2e%2f',
    // Servers that strip path parameters (Tomcat, Spring) read `..;` as `..`.
    '/api/..;/admin',
    '/api/.;x/admin',
    '/api/..%3b/admin',
    '/api/..%3Bjsessionid=1/admin',
    // `#` never belongs to a request target: WHATWG URL and url.parse would hand the upstream `/admin`.
    '/admin#/users',
    '/admin#',
    '/#',
    // Path parameters: /admin to find-my-way (cut at `;`), Tomcat and Spring (stripped per segment).
    '/admin;x',
    '/admin;/users',
    '/api/;/x',
    '/api/a..;/x',
    '/a/b;jsessionid=1',
    '/;',
  ];
  t.ok(refused.length >= 30);
  for (const path of refused) {
    try {
      normalizePath(path);
      t.fail(`${JSON.stringify(path)} was accepted`);
    } catch (err) {
      t.ok(err instanceof ProxyError, JSON.stringify(path));
      t.match(err, { code: 'bad_request', status: 400, reason: 'ambiguous_path' }, JSON.stringify(path));
    }
  }
});

t.test('unambiguous request paths are accepted and normalized', async (t) => {
  const accepted: [path: string, normalized: string][] = [
    ['/', '/'],
    ['/a/b', '/a/b'],
    ['/a/b/', '/a/b/'],
    ['/.well-known/x', '/.well-known/x'],
    ['/a.b', '/a.b'],
    ['/a..b', '/a..b'],
    ['/...', '/...'],
    ['/%20', '/%20'],
    ['/a%3Bb', '/a%3Bb'],
    // Escapes of reserved characters stay escaped (upper-cased); unreserved ones are decoded, so they cannot dodge a rule.
    ['/a%3bb', '/a%3Bb'],
    ['/%61pi', '/api'],
    ['/%41%62%63', '/Abc'],
    ['/%7euser', '/~user'],
    ['/a%2Db%5F', '/a-b_'],
    // Percent-encoded '%' stays as it is: we forward what we matched, a double decode is the upstream's business.
    ['/%252e%252e/admin', '/%252e%252e/admin'],
    ['/%c0%ae', '/%C0%AE'],
    // An encoded `;` or `#` is data to every upstream.
    ['/a%23b', '/a%23b'],
  ];
  for (const [path, normalized] of accepted) {
    t.equal(normalizePath(path), normalized, JSON.stringify(path));
  }
});

t.test('a path normalized from escapes matches the route of its plain form', async (t) => {
  const routes = [route('admin', '/admin/**'), route('rest', '/**')];
  t.equal(matchRoute(routes, 'GET', normalizePath('/%61dmin/users')).name, 'admin');
  t.equal(matchRoute(routes, 'GET', normalizePath('/%61%64%6d%69%6e')).name, 'admin');
  t.throws(() => normalizePath('/api/..;/admin'), { code: 'bad_request' }, '..; is refused before any route is matched');
});

t.test('checkPattern rejects patterns a route cannot match', async (t) => {
  const bad: [pattern: string, problem: string][] = [
    ['api/x', 'must start with /'],
    ['', 'must start with /'],
    ['/a/**/b', '** may only be the last segment'],
    ['/**/a', '** may only be the last segment'],
    ['/a/.', 'dot segments never match (such paths are refused)'],
    ['/a/../b', 'dot segments never match (such paths are refused)'],
    ['/api//x', 'empty segments (//) never match (such paths are refused)'],
    ['//', 'empty segments (//) never match (such paths are refused)'],
    ['/a//', 'empty segments (//) never match (such paths are refused)'],
    ['/a*', 'segment "a*" has characters a route cannot match (use * and ** as whole segments)'],
    ['/a/b*c', 'segment "b*c" has characters a route cannot match (use * and ** as whole segments)'],
    ['/a/***', 'segment "***" has characters a route cannot match (use * and ** as whole segments)'],
    ['/a/%2e', 'segment "%2e" has characters a route cannot match (use * and ** as whole segments)'],
    ['/a b', 'segment "a b" has characters a route cannot match (use * and ** as whole segments)'],
    ['/a?x=1', 'segment "a?x=1" has characters a route cannot match (use * and ** as whole segments)'],
    ['/a#x', 'segment "a#x" has characters a route cannot match (use * and ** as whole segments)'],
    ['/a\\b', 'segment "a\\b" has characters a route cannot match (use * and ** as whole segments)'],
    ['/a;b', 'segment "a;b" has characters a route cannot match (use * and ** as whole segments)'],
  ];
  for (const [pattern, problem] of bad) t.equal(checkPattern(pattern), problem, JSON.stringify(pattern));
  const good = ['/', '/**', '/api/**', '/api/*/items', '/api/*/**', '/v1.0/a-b_c~d', '/users/:id', '/a/'];
  for (const pattern of good) t.equal(checkPattern(pattern), null, pattern);
});

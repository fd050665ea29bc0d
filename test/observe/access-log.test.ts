import t from 'tap';
import { spawnSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { join, dirname } from 'node:path';
import { twoDecimals, writeAccessLine, type AccessRecord } from '../../src/observe/access-log.js';
import { BatchedDestination, createLogger, type LineSink } from '../../src/observe/logger.js';
import { ensureBuilt } from '../support/built-cli.js';
import { until } from '../support/until.js';

function capture(level = 'info') {
  const lines: string[] = [];
  const logger = createLogger({ level } as { level: 'info' }, { write: (line: string) => void lines.push(line) });
  return { logger, lines };
}

const plain: AccessRecord = {
  request_id: 'req-1',
  method: 'GET',
  path: '/api/orders',
  route: 'api',
  status: 200,
  duration_ms: 1.25,
  upstream_ms: 0.5,
  tenant: 'acme',
  subject: 'alice',
  auth: 'jwt',
  key_id: 'main',
  ip: '203.0.113.7',
  reason: null,
};

t.test('the access line is byte for byte what pino writes for the same record', async (t) => {
  const realNow = Date.now;
  Date.now = () => Date.UTC(2026, 10, 24, 12, 0, 0, 123);
  t.teardown(() => {
    Date.now = realNow;
  });
  const awkward: AccessRecord[] = [
    plain,
    { ...plain, path: null, route: null, upstream_ms: null, tenant: null, subject: null, auth: null, key_id: null, ip: null, reason: 'no_route', status: 404 },
    { ...plain, subject: 'quote " backslash \\ slash /', tenant: 'line\nbreak\ttab\r\u0001\u001f\u007f' },
    { ...plain, subject: 'unicode é ü 漢字 😀', key_id: '\u2028\u2029' },
    { ...plain, path: '/api/</script>&<!--', reason: 'rate_limited:a,b', duration_ms: 1234567.891, upstream_ms: 0 },
    { ...plain, duration_ms: 0.004, upstream_ms: 10.005 },
  ];
  for (const record of awkward) {
    const fast = capture();
    const reference = capture();
    writeAccessLine(fast.logger, record);
    const round = (ms: number | null) => (ms === null ? null : Math.round(ms * 100) / 100);
    reference.logger.info({ ...record, duration_ms: round(record.duration_ms), upstream_ms: round(record.upstream_ms) });
    t.equal(fast.lines.length, 1);
    t.equal(fast.lines[0], reference.lines[0], JSON.stringify(record.subject));
    t.same(JSON.parse(fast.lines[0]), JSON.parse(reference.lines[0]));
  }
});

t.test('durations are written as String(Math.round(ms * 100) / 100) would', async (t) => {
  const samples = [0, 0.001, 0.005, 0.01, 0.1, 0.105, 1, 1.5, 2.25, 9.99, 10.05, 99.999, 123.456, 1e9 + 0.07, 2 ** 40 / 3, 1e14 + 0.5, 1e16, 1e300];
  for (let i = 0; i < 20_000; i++) samples.push(Math.random() * 10 ** Math.floor(Math.random() * 9));
  let wrong = 0;
  for (const ms of samples) if (twoDecimals(ms) !== String(Math.round(ms * 100) / 100)) wrong++;
  t.equal(wrong, 0, `${samples.length} durations`);
  t.equal(twoDecimals(null), 'null');
  t.equal(twoDecimals(Number.NaN), 'null');
  t.equal(twoDecimals(Number.POSITIVE_INFINITY), 'null');
  t.equal(twoDecimals(-1.234), '-1.23');
});

t.test('a lone surrogate is escaped (JSON.stringify rule) where pino would pass it raw into UTF-8', async (t) => {
  const { logger, lines } = capture();
  writeAccessLine(logger, { ...plain, tenant: 'lone \ud800 surrogate \udc00' });
  t.match(lines[0], '"tenant":"lone \\ud800 surrogate \\udc00"');
  t.equal(JSON.parse(lines[0]).tenant, 'lone \ud800 surrogate \udc00', 'and reads back as the same string');
});

t.test('the access line follows the logger level', async (t) => {
  for (const level of ['warn', 'error', 'silent']) {
    const { logger, lines } = capture(level);
    writeAccessLine(logger, plain);
    t.same(lines, [], `level ${level}: no access line`);
  }
  const debug = capture('debug');
  writeAccessLine(debug.logger, plain);
  t.equal(debug.lines.length, 1, 'level debug: the access line is written');
});

function recordingSink() {
  const sink = {
    pieces: [] as string[],
    flushes: 0,
    syncFlushes: 0,
    destroyed: false,
    write(bytes: Buffer) {
      sink.pieces.push(bytes.toString('utf8'));
    },
    flush(cb?: (err?: Error | null) => void) {
      sink.flushes++;
      cb?.(null);
    },
    flushSync() {
      sink.syncFlushes++;
    },
  };
  return sink satisfies LineSink;
}

t.test('batched lines pass on in order, once enough of them piled up', async (t) => {
  const sink = recordingSink();
  const batch = new BatchedDestination(sink, 25, 60_000);
  t.teardown(() => batch.end());
  batch.write('line one\n');
  batch.write('line two\n');
  t.same(sink.pieces, [], 'held while under minChars');
  batch.write('line three\n');
  batch.write('line four\n');
  t.same(sink.pieces, ['line one\nline two\nline three\n'], 'one piece once minChars is reached');
  let called = false;
  batch.flush(() => (called = true));
  t.same(sink.pieces, ['line one\nline two\nline three\n', 'line four\n'], 'flush passes on the rest');
  t.ok(called);
  t.equal(sink.flushes, 1, 'and flushes the destination behind');
  batch.flushSync();
  t.equal(sink.pieces.length, 2, 'nothing pending: no empty write');
  t.equal(sink.syncFlushes, 1);
});

t.test('batched lines keep every byte: non-ASCII text, and a line too long for the batch buffer', async (t) => {
  const sink = recordingSink();
  const batch = new BatchedDestination(sink, 100, 60_000);
  t.teardown(() => batch.end());
  batch.write('é 漢字 😀\n');
  const long = `${'x'.repeat(40_000)}\n`;
  batch.write(long);
  batch.write('after\n');
  batch.flushSync();
  t.same(sink.pieces, ['é 漢字 😀\n', long, 'after\n'], 'pending lines first, then the long one on its own, then the rest');
});

t.test('a quiet logger still passes its lines on within the flush interval', async (t) => {
  const sink = recordingSink();
  const batch = new BatchedDestination(sink, 16_384, 10);
  t.teardown(() => batch.end());
  batch.write('only line\n');
  t.same(sink.pieces, []);
  await until(() => sink.pieces.length === 1, 2_000, 'the timer flushed the line');
  t.same(sink.pieces, ['only line\n']);
});

t.test('a destroyed destination drops lines instead of throwing', async (t) => {
  const sink = recordingSink();
  const batch = new BatchedDestination(sink, 1, 60_000);
  t.teardown(() => batch.end());
  sink.destroyed = true;
  t.doesNotThrow(() => batch.write('late line\n'));
  t.same(sink.pieces, []);
});

t.test('application and access lines keep their order through the batch', async (t) => {
  const sink = recordingSink();
  const batch = new BatchedDestination(sink, 1 << 20, 60_000);
  t.teardown(() => batch.end());
  const logger = createLogger({ level: 'info' }, batch);
  logger.info({ n: 1 }, 'first');
  writeAccessLine(logger, plain);
  logger.warn({ n: 2 }, 'third');
  batch.flushSync();
  const lines = sink.pieces.join('').trim().split('\n').map((l) => JSON.parse(l));
  t.same(lines.map((l) => l.msg ?? l.request_id), ['first', 'req-1', 'third']);
});

t.test('pending lines reach stdout when the process exits, by process.exit or by running out of work', async (t) => {
  const cli = await ensureBuilt();
  const logger = pathToFileURL(join(dirname(cli), 'observe/logger.js')).href;
  for (const ending of ['process.exit(0)', '', 'setTimeout(() => {}, 20)']) {
    const script = `import { createLogger } from '${logger}';
      const log = createLogger({ level: 'info' });
      for (let i = 0; i < 3; i++) log.info({ i }, 'line');
      ${ending}`;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
    t.equal(child.status, 0, `${ending || 'no more work'}: exits cleanly`);
    t.equal(child.stderr, '', 'nothing on stderr');
    t.same(
      child.stdout.trim().split('\n').map((l) => JSON.parse(l).i),
      [0, 1, 2],
      `${ending || 'no more work'}: every line written`,
    );
  }
});

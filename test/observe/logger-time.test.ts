import t from 'tap';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { createLogger, isoTimeCached } from '../../src/observe/logger.js';

t.test('the cached timestamp is exactly pino isoTime, and follows the clock from one millisecond to the next', async (t) => {
  const realNow = Date.now;
  let now = Date.UTC(2026, 0, 2, 3, 4, 5, 678);
  Date.now = () => now;
  t.teardown(() => {
    Date.now = realNow;
  });
  const time = isoTimeCached();
  t.equal(time(), pino.stdTimeFunctions.isoTime());
  t.equal(time(), ',"time":"2026-01-02T03:04:05.678Z"', 'same millisecond, same text');
  now += 1;
  t.equal(time(), ',"time":"2026-01-02T03:04:05.679Z"');
  t.equal(time(), pino.stdTimeFunctions.isoTime());
  now -= 5_000;
  t.equal(time(), ',"time":"2026-01-02T03:04:00.679Z"', 'a clock that steps back is followed too');
});

t.test('the cached timestamp matches Date#toISOString across millisecond, second, day and year boundaries', async (t) => {
  const realNow = Date.now;
  let now = 0;
  Date.now = () => now;
  t.teardown(() => {
    Date.now = realNow;
  });
  const time = isoTimeCached();
  const instants = [0, 1, 9, 10, 99, 100, 999, 1000, 1001, Date.UTC(2026, 11, 31, 23, 59, 59, 999), Date.UTC(2027, 0, 1), Date.UTC(2024, 1, 29, 12, 0, 0, 5), Date.UTC(9999, 11, 31, 23, 59, 59, 999)];
  for (let i = 0; i < 2000; i++) instants.push(Date.UTC(2026, 10, 24, 20, 0, 0) + i * 7);
  let mismatches = 0;
  for (const instant of instants) {
    now = instant;
    if (time() !== `,"time":"${new Date(instant).toISOString()}"`) mismatches++;
  }
  t.equal(mismatches, 0, `${instants.length} instants, each as toISOString writes it`);
});

t.test('log lines carry an ISO time field', async (t) => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  const before = Date.now();
  createLogger({ level: 'info' }, sink).info({ status: 200 }, 'hello');
  const line = JSON.parse(lines[0]) as { time: string; status: number };
  t.match(line.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  t.ok(Date.parse(line.time) >= before && Date.parse(line.time) <= Date.now());
  t.equal(line.status, 200);
});

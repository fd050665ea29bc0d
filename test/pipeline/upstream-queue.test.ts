// The upstream line on its own: order, limits from each request's plan, and requests that settle at once.
import t from 'tap';
import { UpstreamQueue, type Queued } from '../../src/pipeline/upstream-queue.js';

function request(log: string[], name: string, maxConnections: number, onSend: () => void = () => {}): Queued & { abandoned: boolean } {
  return {
    maxConnections,
    abandoned: false,
    wait: () => log.push(`wait ${name}`),
    send: () => {
      log.push(`send ${name}`);
      onSend();
    },
  };
}

t.test('first come, first sent; at most maxConnections sent; hasRoom counts the line', async (t) => {
  const queue = new UpstreamQueue();
  const log: string[] = [];
  t.ok(queue.hasRoom(2, 1));
  queue.enter(request(log, 'a', 2));
  queue.enter(request(log, 'b', 2));
  t.ok(queue.hasRoom(2, 1), 'both connections busy, the line has room for one');
  queue.enter(request(log, 'c', 2));
  t.notOk(queue.hasRoom(2, 1), 'connections and line full');
  t.ok(queue.hasRoom(2, 2));
  t.same([queue.active, queue.waiting], [2, 1]);
  queue.release();
  t.same(log, ['send a', 'send b', 'wait c', 'send c']);
  t.same([queue.active, queue.waiting], [2, 0]);
});

t.test('a request given up leaves the line and is never sent', async (t) => {
  const queue = new UpstreamQueue();
  const log: string[] = [];
  queue.enter(request(log, 'a', 1));
  const b = request(log, 'b', 1);
  queue.enter(b);
  queue.enter(request(log, 'c', 1));
  b.abandoned = true;
  queue.leave();
  t.equal(queue.waiting, 1);
  queue.release();
  t.same(log, ['send a', 'wait b', 'wait c', 'send c']);
});

t.test('a lower limit after a reload holds its requests until the count is under it; each request goes under the limit of its own plan, in order', async (t) => {
  const queue = new UpstreamQueue();
  const log: string[] = [];
  queue.enter(request(log, 'a', 3));
  queue.enter(request(log, 'b', 3));
  queue.enter(request(log, 'c', 1));
  queue.release();
  t.same([queue.active, queue.waiting], [1, 1], 'one of the old limit still running: c waits (limit 1)');
  queue.release();
  t.same(log, ['send a', 'send b', 'wait c', 'send c']);
  queue.enter(request(log, 'd', 1));
  t.same([queue.active, queue.waiting], [1, 1]);
  queue.enter(request(log, 'e', 3));
  t.same([queue.active, queue.waiting], [1, 2], 'first come, first sent: e (limit 3) waits behind d (limit 1)');
  queue.release();
  t.same([queue.active, queue.waiting], [2, 0], 'd goes under its limit, e under its own');
  t.same(log.slice(-4), ['wait d', 'wait e', 'send d', 'send e']);
});

t.test('thousands of requests that settle as they are sent (a closed pool) start one after another without recursing', async (t) => {
  const queue = new UpstreamQueue();
  const log: string[] = [];
  const release = () => queue.release();
  queue.enter(request(log, 'held', 1));
  for (let i = 0; i < 50_000; i++) queue.enter(request(log, `r${i}`, 1, release));
  t.equal(queue.waiting, 50_000);
  queue.release();
  t.same([queue.active, queue.waiting], [0, 0]);
  t.equal(log.filter((l) => l.startsWith('send')).length, 50_001);
});

t.test('100,000 requests given up in any order leave the line at once, and the line works on', async (t) => {
  const queue = new UpstreamQueue();
  const log: string[] = [];
  queue.enter(request(log, 'held', 1));
  const waiting = Array.from({ length: 100_000 }, (_, i) => request(log, `r${i}`, 1));
  for (const r of waiting) queue.enter(r);
  // Every other one from the back, then the rest from the front but the last: no order is cheaper than another.
  const started = Date.now();
  for (let i = waiting.length - 2; i >= 0; i -= 2) {
    waiting[i].abandoned = true;
    queue.leave();
  }
  for (let i = 1; i < waiting.length - 1; i += 2) {
    waiting[i].abandoned = true;
    queue.leave();
  }
  t.ok(Date.now() - started < 1_000, `given up in ${Date.now() - started} ms`);
  t.equal(queue.waiting, 1);
  t.ok(queue.hasRoom(1, 2));
  queue.release();
  t.same(log.filter((l) => l.startsWith('send')), ['send held', 'send r99999'], 'only the one left is sent');
  t.same([queue.active, queue.waiting], [1, 0]);
  queue.enter(request(log, 'later', 1));
  queue.release();
  t.same(log.slice(-2), ['wait later', 'send later'], 'and the line works on');
});

// The upstream line on its own: order, limits from each request's plan, and requests that settle at once.
import t from 'tap';
import { UpstreamQueue, type Queued } from '../../src/pipeline/upstream-queue.js';

function request(log: string[], name: string, maxConnections: number, onSend: () => void = () => {}): Queued {
  return {
    maxConnections,
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
  queue.leave(b);
  queue.leave(b);
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

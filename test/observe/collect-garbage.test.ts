import t from 'tap';
import { setImmediate as tick } from 'node:timers/promises';
import { collectGarbage } from '../../src/observe/collect-garbage.js';

t.test('a full collection on demand frees what nothing references, and leaves the globals alone', async (t) => {
  let big: number[] | null = new Array(1_000_000).fill(1);
  const ref = new WeakRef(big);
  big = null;
  // A WeakRef keeps its target until the current job ends.
  await tick();
  t.equal(collectGarbage(), true);
  t.equal(ref.deref(), undefined, 'the unreferenced array was collected');
  t.equal(collectGarbage(), true, 'and again');
  t.equal((globalThis as { gc?: unknown }).gc, undefined, 'no global gc appears in the main context');
});

import t from 'tap';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { setImmediate as tick } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { collectGarbage, LARGE_TABLE_HEAP_GROWTH_PERCENT } from '../../src/observe/collect-garbage.js';
import { ensureBuilt } from '../support/built-cli.js';

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

t.test('limitHeapGrowth caps the growth V8 allows the old generation after a full collection', async (t) => {
  const cli = await ensureBuilt();
  const module = pathToFileURL(join(dirname(cli), 'observe/collect-garbage.js')).href;
  // Enough long-lived objects for V8 to run full collections; --trace-gc-verbose prints the factor of each new limit.
  const script = (limited: boolean) => `
    import { limitHeapGrowth } from ${JSON.stringify(module)};
    if (${limited} && !limitHeapGrowth()) throw new Error('limitHeapGrowth refused');
    const live = [];
    for (let i = 0; i < 600_000; i++) live.push({ a: 'x' + i, b: i, c: [i] });
    console.log(live.length);`;
  const factors = (limited: boolean): number[] => {
    const child = spawnSync(process.execPath, ['--trace-gc-verbose', '--input-type=module', '-e', script(limited)], { encoding: 'utf8', timeout: 60_000 });
    t.equal(child.status, 0, `child (${limited ? 'limited' : 'V8 default'}) exits cleanly: ${child.stderr}`);
    return [...child.stdout.matchAll(/Limit: old size: \d+ KB, new limit: \d+ KB \(([\d.]+)\)/g)].map((m) => Number(m[1]));
  };
  const byDefault = factors(false);
  const limited = factors(true);
  t.ok(limited.length > 0 && byDefault.length > 0, 'both ran full collections');
  // V8's first factor has no collection speed to go by and takes its maximum (4.0 on a 64-bit machine).
  t.ok(Math.max(...byDefault) > 2, `V8 default factors: ${byDefault.join(', ')}`);
  // Printed with one decimal: 1.25 shows as 1.2.
  const cap = 1 + LARGE_TABLE_HEAP_GROWTH_PERCENT / 100 + 0.05;
  t.ok(limited.every((f) => f <= cap), `limited factors: ${limited.join(', ')} (at most ${cap})`);
});

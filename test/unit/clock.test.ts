import t from 'tap';
import { ManualClock } from '../../src/clock.js';

t.test('a manual clock moves only when told to', async (t) => {
  const clock = new ManualClock(1000);
  t.equal(clock.now(), 1000);
  clock.advance(500);
  t.equal(clock.now(), 1500);
  clock.set(10);
  t.equal(clock.now(), 10);
});

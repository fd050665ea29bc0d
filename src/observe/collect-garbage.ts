// Heap settings for a large key table: one full garbage collection after loading it, and bounded old-generation growth.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Key tables at least this large make loading garbage worth collecting at once. */
export const LARGE_KEY_TABLE = 10_000;

let gc: (() => void) | null | undefined;

/**
 * Loading 100,000 API keys leaves tens of MiB of parse garbage (the file's text, the parsed entries, the
 * duplicate checks), and V8 sizes the old generation by what was live at its last full collection: until
 * the next one, the process keeps that much more memory. One collection right after loading sets the
 * limit from what is really live (measured: 100,000 keys idle at 171 MiB RSS instead of 207, and 246
 * instead of 288 after a bucket per key). The gc function comes from a fresh vm context once V8's
 * --expose-gc flag is set at run time (v8.setFlagsFromString); the main context's globals stay as they are.
 * Returns false where the runtime does not allow it.
 */
export function collectGarbage(): boolean {
  if (gc === undefined) {
    try {
      setFlagsFromString('--expose-gc');
      gc = runInNewContext('gc') as () => void;
    } catch {
      gc = null;
    }
  }
  if (typeof gc !== 'function') return false;
  gc();
  return true;
}

/**
 * How far V8 lets the old generation grow past what was live at the last full collection before the next one,
 * once a large key table is loaded. V8 picks 10% to 300% by how fast it collects; with 70 MiB of keys and
 * buckets live that headroom alone reached 150 MiB (100,000 keys, a bucket each: 228 MiB RSS; with 25%,
 * about 175 MiB, at no CPU cost we could measure, since the live set hardly changes).
 */
export const LARGE_TABLE_HEAP_GROWTH_PERCENT = 25;

/**
 * Caps old-generation growth at `percent` for the rest of the process (V8's --heap-growing-percent, which it
 * reads at every full collection, so setting it at run time takes effect). Returns false where not allowed.
 */
export function limitHeapGrowth(percent = LARGE_TABLE_HEAP_GROWTH_PERCENT): boolean {
  try {
    setFlagsFromString(`--heap-growing-percent=${percent}`);
    return true;
  } catch {
    return false;
  }
}

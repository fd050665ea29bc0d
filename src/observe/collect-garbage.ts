// One full garbage collection on demand: after a large config is loaded, not on any request path.
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

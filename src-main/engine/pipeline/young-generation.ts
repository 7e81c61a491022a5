// The main thread's heap: its young generation, and collections on demand (collectGarbage, below, also used by the
// engine workers). The main thread only keeps the books (the workers touch the bytes), yet V8 grows its
// semi-spaces to 16-32 MB, which stay resident. V8 reads --semi-space-growth-factor each time it would grow them, so
// a factor of 1 keeps them at their initial size; but making another isolate's heap (a Worker's, as it starts) puts
// the factor back to at least 2 (measured on Node 20: a script's new space grew to 32 MB after a worker with
// resource limits started, and stayed at 2 MB when the flag was set again after it had). The entry point chooses
// (holdYoungGeneration); the pool sets it again as each of its workers comes online.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let held = false;

/** Keep this process's young generation at its initial size from now on (bin/clinicvault.js calls it first). */
export function holdYoungGeneration(): void {
  held = true;
  setFlagsFromString('--semi-space-growth-factor=1');
}

/** Set the flag again if it was chosen: after a worker has started, which resets it. */
export function reassertYoungGeneration(): void {
  if (held) setFlagsFromString('--semi-space-growth-factor=1');
}

let collector: ((opts?: { type: 'major' | 'minor' }) => void) | undefined | null = null;

/** A collection on this thread, now: full, or of the young generation only (where V8 exposes it; otherwise
 * nothing). The engine workers collect their young generation at set moments (engine-worker.ts). Restore and
 * verify collect in full on the main thread once their plans are made, before the workers' memory peaks: the index
 * files, snapshots and listings just read are garbage by then, and V8 had often left them (~7 MB of heap, and the
 * buffers they hold) until after the peak. */
export function collectGarbage(type: 'major' | 'minor' = 'major'): void {
  if (collector === null) {
    setFlagsFromString('--expose-gc');
    collector = runInNewContext('gc') as typeof collector;
  }
  collector?.({ type });
}

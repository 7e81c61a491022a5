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

/** A function is optimized by TurboFan once it has run this much bytecode (V8's default is 66 KB). */
const INTERRUPT_BUDGET = 4_000_000;

/** V8 settings for the engine, set by the entry point (bin/clinicvault.js) before anything loads, and again by each
 * EnginePool before its workers start (V8's flags are per process; setting them twice is harmless; decision 0021):
 * - TurboFan optimizes a function only after ~60x more work than by default. A command lasts seconds, and its bytes
 *   are handled by native code (hashing, AES, Brotli); V8 had compiled ~170 functions, several of them 4-14 times
 *   over after deoptimizations (0.6-0.7 CPU-s of a first backup), and the compiler's memory was part of every
 *   step's peak. The few functions that loop over many chunks are still optimized.
 * - Buffers (ArrayBuffer memory) are freed within the collection that finds them dead, not later by a background
 *   task: with both cores busy that task waited, and a restore's worker held tens of MB of freed groups. It also
 *   makes the engine workers' reading of V8's external memory current (engine-worker.ts). */
export function setEngineFlags(): void {
  setFlagsFromString(`--interrupt-budget=${INTERRUPT_BUDGET}`);
  setFlagsFromString('--no-concurrent-array-buffer-sweeping');
}

let collector: ((opts?: { type: 'major' | 'minor' }) => void) | undefined | null = null;

/** A collection on this thread, now: full (a mark-compact), or of the young generation only (where V8 exposes it;
 * otherwise nothing). The engine workers collect their young generation at set moments (engine-worker.ts). Restore and
 * verify collect in full on the main thread once their plans are made, before the workers' memory peaks: the index
 * files, snapshots and listings just read are garbage by then, and V8 had often left them (~7 MB of heap, and the
 * buffers they hold) until after the peak. */
export function collectGarbage(type: 'major' | 'minor' = 'major'): void {
  if (collector === null) {
    setFlagsFromString('--expose-gc');
    collector = runInNewContext('gc') as typeof collector;
  }
  // Node 20's gc({ type: 'major' }) runs a scavenge, like { type: 'minor' } (--trace-gc shows it); only gc() with no
  // options runs a full mark-compact.
  if (type === 'major') collector?.();
  else collector?.({ type });
}

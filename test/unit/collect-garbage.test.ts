// The engine's full collections must free buffers that outlived young collections: restore and verify rely on them
// (and the workers' guard on V8's external memory, engine-worker.ts). Node 20's gc({ type: 'major' }) only
// scavenges; this failed with it.
import { getHeapStatistics } from 'node:v8';
import { describe, expect, it } from 'vitest';
import { collectGarbage, setEngineFlags } from '../../src-main/engine/pipeline/young-generation.js';

const external = (): number => getHeapStatistics().external_memory;

describe('collectGarbage', () => {
  it('frees buffers that moved to the old generation, at once', () => {
    setEngineFlags();
    let held: Buffer[] | undefined = Array.from({ length: 64 }, () => Buffer.alloc(256 * 1024, 1));
    // Two young collections while they are referenced move them to the old generation.
    collectGarbage('minor');
    collectGarbage('minor');
    const before = external();
    held = undefined;
    collectGarbage('minor');
    expect(external()).toBeGreaterThan(before - 4 * 1024 * 1024);
    collectGarbage('major');
    expect(held).toBeUndefined();
    expect(external()).toBeLessThan(before - 15 * 1024 * 1024);
  });
});

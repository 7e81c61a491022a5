// writeFileAtomic writes parts drawn from any iterable, a group at a time: an array of views (index files), or pieces
// made as they are taken (the index cache, sealed piecewise). Every byte must land in order, whatever the grouping.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeFileAtomic } from '../../src-main/engine/vault/storage.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cv-write-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('writeFileAtomic', () => {
  it('writes an array of many parts, empty ones included, in order', async () => {
    const parts = Array.from({ length: 1500 }, (_, i) => randomBytes(i % 7 === 0 ? 0 : (i * 37) % 3000));
    const file = path.join(dir, 'many');
    await writeFileAtomic(file, parts);
    expect(fs.readFileSync(file).equals(Buffer.concat(parts))).toBe(true);
  });

  it('draws pieces from a generator as it writes them, not all at once', async () => {
    const pieces = Array.from({ length: 12 }, () => randomBytes(700 * 1024));
    let drawn = 0;
    let drawnBeforeFirstWrite = -1;
    const file = path.join(dir, 'lazy');
    function* lazily(): Generator<Uint8Array> {
      for (const p of pieces) {
        // Once the temporary file has bytes, the first group was written.
        if (drawnBeforeFirstWrite < 0 && fs.readdirSync(dir).some((f) => f.startsWith('.tmp-') && fs.statSync(path.join(dir, f)).size > 0)) drawnBeforeFirstWrite = drawn;
        drawn++;
        yield p;
      }
    }
    await writeFileAtomic(file, lazily(), { durable: false });
    expect(fs.readFileSync(file).equals(Buffer.concat(pieces))).toBe(true);
    expect(drawnBeforeFirstWrite).toBeGreaterThan(0);
    expect(drawnBeforeFirstWrite).toBeLessThan(pieces.length);
  });
});

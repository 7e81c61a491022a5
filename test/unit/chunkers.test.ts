import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { FastCdc, gearTable } from '../../src-main/engine/chunker/chunkers.js';

function chunks(cdc: FastCdc, data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let pos = 0;
  while (pos < data.length) {
    const n = cdc.cut(data, pos, data.length);
    out.push(data.subarray(pos, pos + n));
    pos += n;
  }
  return out;
}

describe('FastCDC', () => {
  const cdc = new FastCdc(gearTable(Buffer.alloc(32, 1)), 16 * 1024, 64 * 1024, 256 * 1024);

  it('cuts within bounds and near the average size', () => {
    const data = randomBytes(8 * 1024 * 1024);
    const cs = chunks(cdc, data);
    expect(Buffer.concat(cs).equals(data)).toBe(true);
    for (const c of cs.slice(0, -1)) {
      expect(c.length).toBeGreaterThanOrEqual(16 * 1024);
      expect(c.length).toBeLessThanOrEqual(256 * 1024);
    }
    const avg = data.length / cs.length;
    expect(avg).toBeGreaterThan(32 * 1024);
    expect(avg).toBeLessThan(128 * 1024);
  });

  it('resynchronises after an insertion, so most chunks are shared', () => {
    const data = randomBytes(4 * 1024 * 1024);
    const edited = Buffer.concat([data.subarray(0, 1_000_000), Buffer.from('inserted text'), data.subarray(1_000_000)]);
    const a = new Set(chunks(cdc, data).map((c) => c.toString('base64')));
    const b = chunks(cdc, edited);
    const shared = b.filter((c) => a.has(c.toString('base64'))).length;
    expect(shared / b.length).toBeGreaterThan(0.9);
  });

  it('depends on the key: another vault cuts elsewhere', () => {
    const other = new FastCdc(gearTable(Buffer.alloc(32, 2)), 16 * 1024, 64 * 1024, 256 * 1024);
    const data = randomBytes(2 * 1024 * 1024);
    const la = chunks(cdc, data).map((c) => c.length);
    const lb = chunks(other, data).map((c) => c.length);
    expect(la).not.toEqual(lb);
  });

  it('cuts exactly where the one-byte-at-a-time definition does, so vaults written before keep deduplicating', () => {
    // FastCDC 2020 as FORMAT.md states it, without the unrolling the engine uses.
    const gear = gearTable(Buffer.alloc(32, 1));
    const bits = Math.round(Math.log2(64 * 1024));
    const maskS = ~((1 << (32 - (bits + 2))) - 1) | 0;
    const maskL = ~((1 << (32 - (bits - 2))) - 1) | 0;
    const reference = (buf: Buffer, start: number, end: number): number => {
      let n = end - start;
      if (n <= 16 * 1024) return n;
      n = Math.min(n, 256 * 1024);
      let h = 0;
      for (let i = 16 * 1024; i < n; i++) {
        h = ((h << 1) + gear[buf[start + i]!]!) | 0;
        if ((h & (i < 64 * 1024 ? maskS : maskL)) === 0) return i + 1;
      }
      return n;
    };
    // Random bytes, and bytes whose cut points fall late (few distinct values), at every alignment of start and end.
    for (const data of [randomBytes(3 * 1024 * 1024), Buffer.from(randomBytes(3 * 1024 * 1024).map((b) => b & 3))]) {
      for (let shift = 0; shift < 4; shift++) {
        const end = data.length - shift;
        let pos = shift;
        while (pos < end) {
          const n = cdc.cut(data, pos, end);
          expect(n).toBe(reference(data, pos, end));
          pos += n;
        }
      }
    }
  });
});

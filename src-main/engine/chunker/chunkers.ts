// Chunkers: where to cut a byte stream. Files use FastCDC (2020, normalized chunking) with a gear table derived
// from the vault's id key, so cut points reveal nothing about content to someone without the key. SQLite database
// images are cut on page boundaries: pages change in place, so unchanged pages make identical chunks.
import { hkdfSync } from 'node:crypto';

export interface Cutter {
  /** Largest chunk this cutter can produce; callers hand it at least this much unless at end of stream. */
  readonly max: number;
  /** Length of the next chunk in buf[start, end). When fewer than `max` bytes remain, end must be end of stream. */
  cut(buf: Uint8Array, start: number, end: number): number;
}

export function gearTable(idKey: Buffer): Int32Array {
  const bytes = Buffer.from(hkdfSync('sha256', idKey, Buffer.alloc(0), Buffer.from('clinicvault fastcdc gear v1'), 1024));
  const gear = new Int32Array(256);
  for (let i = 0; i < 256; i++) gear[i] = bytes.readInt32LE(i * 4);
  return gear;
}

export class FastCdc implements Cutter {
  private readonly maskS: number;
  private readonly maskL: number;
  constructor(private readonly gear: Int32Array, readonly min: number, readonly avg: number, readonly max: number) {
    const bits = Math.round(Math.log2(avg));
    // Top bits of the 32-bit gear hash depend on the most recent ~32 bytes; use them.
    this.maskS = ~((1 << (32 - (bits + 2))) - 1) | 0;
    this.maskL = ~((1 << (32 - (bits - 2))) - 1) | 0;
  }

  cut(buf: Uint8Array, start: number, end: number): number {
    let n = end - start;
    if (n <= this.min) return n;
    if (n > this.max) n = this.max;
    const normal = Math.min(this.avg, n);
    const gear = this.gear;
    const maskS = this.maskS;
    const maskL = this.maskL;
    let h = 0;
    let i = start + this.min;
    const normEnd = start + normal;
    const lim = start + n;
    // Four bytes per turn, then the rest one by one: the same cut points, ~35% less time (280 -> 180 ms for
    // 256 MB of random bytes), as V8 does not unroll the loop itself.
    for (; i + 3 < normEnd; i += 4) {
      h = ((h << 1) + gear[buf[i]!]!) | 0;
      if ((h & maskS) === 0) return i - start + 1;
      h = ((h << 1) + gear[buf[i + 1]!]!) | 0;
      if ((h & maskS) === 0) return i - start + 2;
      h = ((h << 1) + gear[buf[i + 2]!]!) | 0;
      if ((h & maskS) === 0) return i - start + 3;
      h = ((h << 1) + gear[buf[i + 3]!]!) | 0;
      if ((h & maskS) === 0) return i - start + 4;
    }
    for (; i < normEnd; i++) {
      h = ((h << 1) + gear[buf[i]!]!) | 0;
      if ((h & maskS) === 0) return i - start + 1;
    }
    for (; i + 3 < lim; i += 4) {
      h = ((h << 1) + gear[buf[i]!]!) | 0;
      if ((h & maskL) === 0) return i - start + 1;
      h = ((h << 1) + gear[buf[i + 1]!]!) | 0;
      if ((h & maskL) === 0) return i - start + 2;
      h = ((h << 1) + gear[buf[i + 2]!]!) | 0;
      if ((h & maskL) === 0) return i - start + 3;
      h = ((h << 1) + gear[buf[i + 3]!]!) | 0;
      if ((h & maskL) === 0) return i - start + 4;
    }
    for (; i < lim; i++) {
      h = ((h << 1) + gear[buf[i]!]!) | 0;
      if ((h & maskL) === 0) return i - start + 1;
    }
    return n;
  }
}

export class FixedCutter implements Cutter {
  constructor(readonly max: number) {}
  cut(_buf: Uint8Array, start: number, end: number): number {
    return Math.min(this.max, end - start);
  }
}

/** Chunk size for a SQLite image: its page size, grouped up to at least minBytes. */
export function sqliteChunkSize(pageSize: number, minBytes: number): number {
  let size = pageSize;
  while (size < minBytes) size *= 2;
  return size;
}

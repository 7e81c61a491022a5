// Read a file and cut it into chunks with a Cutter, never holding more than one read block plus one max chunk.
import * as fsp from 'node:fs/promises';
import type { Cutter } from './chunkers.js';

const BLOCK = 8 * 1024 * 1024;

/** Calls onChunk for each chunk in order (awaiting it, which gives backpressure). Returns bytes read. */
export async function readChunks(
  file: string,
  cutter: Cutter,
  onChunk: (chunk: Buffer) => Promise<void> | void,
  signal?: AbortSignal,
): Promise<number> {
  const fh = await fsp.open(file, 'r');
  try {
    let carry: Buffer = Buffer.alloc(0);
    let total = 0;
    let eof = false;
    while (!eof) {
      signal?.throwIfAborted();
      const want = Math.max(BLOCK, cutter.max);
      const block = Buffer.allocUnsafe(want);
      let got = 0;
      while (got < want) {
        const { bytesRead } = await fh.read(block, got, want - got, null);
        if (bytesRead === 0) {
          eof = true;
          break;
        }
        got += bytesRead;
      }
      total += got;
      const buf = carry.length ? Buffer.concat([carry, block.subarray(0, got)]) : block.subarray(0, got);
      let pos = 0;
      while (pos < buf.length && (eof || buf.length - pos >= cutter.max)) {
        const len = cutter.cut(buf, pos, buf.length);
        await onChunk(buf.subarray(pos, pos + len));
        pos += len;
      }
      carry = pos < buf.length ? Buffer.from(buf.subarray(pos)) : Buffer.alloc(0);
    }
    return total;
  } finally {
    await fh.close();
  }
}

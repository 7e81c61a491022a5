// Chunk compression. New chunks use Brotli (RFC 7932): on this data it is 2-5x faster than deflate level 1 at a
// similar ratio, and it passes incompressible bytes at about 1 GB/s. Gathered database pages use quality 0, file
// chunks quality 1 (see compressChunk). A sample decides first, so photos (incompressible) cost one tiny compression
// each. Deflate (raw, RFC 1951) is still read: vaults written
// before format note 0007 use it.
import { brotliCompressSync, brotliDecompressSync, constants as zc, inflateRawSync } from 'node:zlib';

export const Compression = { None: 0, DeflateRaw: 1, Brotli: 2 } as const;
export type Compression = (typeof Compression)[keyof typeof Compression];

const SAMPLE_PIECES = 8;
const PIECE = 512;
/** Quality 0 with a window just big enough for the input: the encoder sets up a smaller ring buffer, which makes a
 * 4 KiB database page ~13% cheaper to compress (29 instead of 34 us) at the same ratio. */
function brotliOpts(length: number, quality: BrotliQuality = 0): { params: Record<number, number> } {
  return {
    params: {
      [zc.BROTLI_PARAM_QUALITY]: quality,
      [zc.BROTLI_PARAM_MODE]: zc.BROTLI_MODE_GENERIC,
      [zc.BROTLI_PARAM_LGWIN]: Math.min(24, Math.max(10, Math.ceil(Math.log2(Math.max(length, 1))))),
    },
  };
}

/** How many compressor instances have been made: each holds native memory until garbage collection, which V8
 * does not see, so a worker that makes thousands (4 KiB database pages) collects now and then (engine-worker). */
export let compressorsMade = 0;

/** Eight 512-byte pieces spread over the chunk: a PDF that mixes text and images is judged by all of it. */
function looksCompressible(data: Buffer): boolean {
  if (data.length <= SAMPLE_PIECES * PIECE * 2) return true;
  const sample = Buffer.allocUnsafe(SAMPLE_PIECES * PIECE);
  const step = Math.floor((data.length - PIECE) / (SAMPLE_PIECES - 1));
  for (let i = 0; i < SAMPLE_PIECES; i++) data.copy(sample, i * PIECE, i * step, i * step + PIECE);
  compressorsMade++;
  return brotliCompressSync(sample, brotliOpts(sample.length)).length < sample.length * 0.97;
}

/** Quality 0 or 1. Measured on the bench data (1 MiB pieces of the PDFs / 256 KiB groups of the database):
 * - PDFs: quality 1 compresses at ~480 MB/s against ~520, stores 65% against 68%, and its output decodes at
 *   ~570 MB/s against ~330: restore and verify spend 0.4 CPU-s less on 300 MB of documents.
 * - Database groups: quality 1 costs 0.83 against 0.57 CPU-s for the same ~370 MB/s decoding, so they stay at 0. */
export type BrotliQuality = 0 | 1;

/** The bytes to store and how they are compressed; compressed only when it saves at least 3%. */
export function compressChunk(data: Buffer, quality: BrotliQuality = 0): { payload: Buffer; compression: Compression } {
  if (data.length < 64 || !looksCompressible(data)) return { payload: data, compression: Compression.None };
  compressorsMade++;
  const packed = brotliCompressSync(data, brotliOpts(data.length, quality));
  if (packed.length <= data.length * 0.97) return { payload: packed, compression: Compression.Brotli };
  return { payload: data, compression: Compression.None };
}

/** Undo compressChunk; throws on an unknown method or damaged data. */
export function decompressChunk(payload: Buffer, compression: number, rawLength: number): Buffer {
  switch (compression) {
    case Compression.None:
      return payload;
    // One output buffer of the known size instead of 16 KiB pieces joined: 20-30% faster (pages 23 instead of
    // 29 us, large chunks 364 instead of 277 MB/s).
    case Compression.Brotli:
      return brotliDecompressSync(payload, { chunkSize: Math.max(64, rawLength + 64), maxOutputLength: rawLength + 1 });
    case Compression.DeflateRaw:
      return inflateRawSync(payload, { chunkSize: Math.max(64, rawLength + 64), maxOutputLength: rawLength + 1 });
    default:
      throw new Error(`unknown compression ${compression}`);
  }
}

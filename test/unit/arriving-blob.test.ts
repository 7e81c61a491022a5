// A streamed restore job (decision 0036) opens a photo's chunk from its sealed bytes as they are read, in pieces
// that fall anywhere: across the nonce, the ciphertext and the tag. Whatever the pieces, the plaintext is the chunk's,
// and a changed, short or misnamed blob is refused once its last byte is taken.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hmac, seal } from '../../src-main/engine/vault/crypto.js';
import { ArrivingBlob, BlobType, ChunkIntegrityError, dataBlobAad, type PackBlob } from '../../src-main/engine/vault/pack.js';

const keys = { encryption: randomBytes(32), id: randomBytes(32) };

function sealed(plain: Buffer, bound: boolean): { bytes: Buffer; blob: PackBlob } {
  const id = hmac(keys.id, plain);
  const bytes = seal(keys.encryption, plain, dataBlobAad(id, bound));
  return { bytes, blob: { id, type: BlobType.Data, compression: 0, offset: 0, length: bytes.length, rawLength: plain.length } };
}

/** Feed bytes in pieces of the given sizes (the last piece takes the rest); returns the plaintext given back. */
function feed(a: ArrivingBlob, bytes: Buffer, sizes: number[]): Buffer {
  const out: Buffer[] = [];
  let at = 0;
  for (const n of sizes) {
    if (at >= bytes.length) break;
    out.push(a.take(bytes.subarray(at, Math.min(bytes.length, at + n))));
    at += n;
  }
  if (at < bytes.length) out.push(a.take(bytes.subarray(at)));
  return Buffer.concat(out);
}

describe('ArrivingBlob', () => {
  it.each([false, true])('gives back the chunk whatever the pieces, through the nonce and the tag (ids bound: %s)', (bound) => {
    const plain = randomBytes(300_000);
    const { bytes, blob } = sealed(plain, bound);
    const cuts: number[][] = [
      [bytes.length], // whole
      [1, 1, 5, 7, 100, 65536], // the nonce in pieces, then the rest
      [12, bytes.length - 12 - 16, 3, 13], // exactly the nonce, the body, the tag in two
      [11, bytes.length - 20, 9], // a piece across the nonce's end, another across the tag's start
      Array.from({ length: 40 }, (_, i) => 997 * (i + 1)),
    ];
    for (const sizes of cuts) {
      const a = new ArrivingBlob(keys, blob, 'pack', bound);
      expect(feed(a, bytes, sizes).equals(plain), sizes.join(',')).toBe(true);
      expect(() => a.end()).not.toThrow();
    }
  });

  it('opens an empty chunk', () => {
    const { bytes, blob } = sealed(Buffer.alloc(0), true);
    const a = new ArrivingBlob(keys, blob, 'pack', true);
    expect(feed(a, bytes, [5, 5, 5]).length).toBe(0);
    expect(() => a.end()).not.toThrow();
  });

  it.each([false, true])('refuses a blob changed anywhere, once its last byte is taken (ids bound: %s)', (bound) => {
    const plain = randomBytes(100_000);
    const { bytes, blob } = sealed(plain, bound);
    for (const at of [0, 11, 12, 5000, bytes.length - 17, bytes.length - 16, bytes.length - 1]) {
      const damaged = Buffer.from(bytes);
      damaged[at]! ^= 1;
      const a = new ArrivingBlob(keys, blob, 'pack', bound);
      feed(a, damaged, [4096, 4096]);
      expect(() => a.end(), `byte ${at}`).toThrow(/authentication failed \(the stored bytes were changed\)/);
    }
  });

  it('refuses a blob cut short, and more bytes than the chunk has', () => {
    const { bytes, blob } = sealed(randomBytes(10_000), true);
    const short = new ArrivingBlob(keys, blob, 'pack', true);
    short.take(bytes.subarray(0, bytes.length - 1));
    expect(() => short.end()).toThrow(ChunkIntegrityError);
    const long = new ArrivingBlob(keys, blob, 'pack', true);
    expect(() => long.take(Buffer.concat([bytes, Buffer.alloc(1)]))).toThrow(/more bytes than the chunk has/);
  });

  it('refuses another chunk in its place: by its aad where ids are bound (format 3 and 4), by its hash before', () => {
    const a = sealed(randomBytes(50_000), true);
    const b = sealed(randomBytes(50_000), true);
    const bound = new ArrivingBlob(keys, { ...b.blob, length: a.bytes.length }, 'pack', true);
    feed(bound, a.bytes, [1000]);
    expect(() => bound.end()).toThrow(/authentication failed/);

    const c = sealed(randomBytes(50_000), false);
    const d = sealed(randomBytes(50_000), false);
    const unbound = new ArrivingBlob(keys, { ...d.blob, length: c.bytes.length }, 'pack', false);
    feed(unbound, c.bytes, [1000]);
    expect(() => unbound.end()).toThrow(/content does not match its id/);
  });
});

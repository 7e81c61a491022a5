// What a restore or verify worker counts as garbage made by opening chunks (BlobOpener.takeMade): it collects after
// every few MiB of it, so a count that misses the 256 KiB group opened for one 4 KiB page lets tens of MB wait.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { compressChunk } from '../../src-main/engine/vault/compress.js';
import { hmac, open, seal, sealLazily } from '../../src-main/engine/vault/crypto.js';
import { BLOB_AAD, BlobOpener, BlobType, GROUP_AAD, type PackBlob } from '../../src-main/engine/vault/pack.js';

const keys = { encryption: randomBytes(32), id: randomBytes(32) };

/** A group of `n` 4 KiB pages (compressible), sealed as the backup seals it, and its members' entries. */
function group(n: number): { sealed: Buffer; members: PackBlob[]; pages: Buffer[] } {
  const pages = Array.from({ length: n }, (_, i) => Buffer.alloc(4096, `page ${i} `));
  const { payload, compression } = compressChunk(Buffer.concat(pages));
  const sealed = seal(keys.encryption, payload, GROUP_AAD);
  const members = pages.map((p, i) => ({ id: hmac(keys.id, p), type: BlobType.Member, compression, offset: 0, length: sealed.length, rawLength: 4096, inner: i * 4096, groupRaw: n * 4096 }) as PackBlob);
  return { sealed, members, pages };
}

describe('BlobOpener', () => {
  it('counts a whole group once when one of its pages is opened, and nothing for the pages after it', () => {
    const g = group(64);
    const opener = new BlobOpener(keys);
    expect(opener.open(g.sealed, g.members[5]!, 'p').equals(g.pages[5]!)).toBe(true);
    expect(opener.takeMade()).toBe(g.sealed.length + 64 * 4096);
    expect(opener.open(g.sealed, g.members[6]!, 'p').equals(g.pages[6]!)).toBe(true);
    expect(opener.check(g.sealed, g.members[7]!, 'p')).toBe(4096);
    expect(opener.takeMade()).toBe(0);
  });

  it('counts a file chunk as its decrypted bytes, whether opened whole or checked in pieces', () => {
    const photo = randomBytes(700 * 1024);
    const sealed = seal(keys.encryption, photo, BLOB_AAD);
    const blob: PackBlob = { id: hmac(keys.id, photo), type: BlobType.Data, compression: 0, offset: 0, length: sealed.length, rawLength: photo.length };
    const opener = new BlobOpener(keys);
    expect(opener.open(sealed, blob, 'p').equals(photo)).toBe(true);
    expect(opener.takeMade()).toBe(sealed.length);
    expect(opener.check(sealed, blob, 'p')).toBe(photo.length);
    expect(opener.takeMade()).toBe(sealed.length);
  });

  it('opens a large uncompressed chunk in pieces no larger than asked, and throws once the pieces do not add up', () => {
    const photo = randomBytes(3 * 1024 * 1024 + 17);
    const sealed = seal(keys.encryption, photo, BLOB_AAD);
    const blob: PackBlob = { id: hmac(keys.id, photo), type: BlobType.Data, compression: 0, offset: 0, length: sealed.length, rawLength: photo.length };
    const opener = new BlobOpener(keys);
    const pieces: Buffer[] = [];
    opener.openTo(sealed, blob, 'p', 1024 * 1024, (p) => pieces.push(p));
    expect(pieces.length).toBe(4);
    expect(Math.max(...pieces.map((p) => p.length))).toBe(1024 * 1024);
    expect(Buffer.concat(pieces).equals(photo)).toBe(true);
    const damaged = Buffer.from(sealed);
    damaged[damaged.length - 100] ^= 1;
    let given = 0;
    expect(() => opener.openTo(damaged, blob, 'p', 1024 * 1024, () => given++)).toThrow(/authentication failed/);
    expect(given).toBe(4); // handed out before the tag is checked: the caller discards them (restore's partial file)
    // A small chunk comes whole.
    const small = randomBytes(1000);
    const sealedSmall = seal(keys.encryption, small, BLOB_AAD);
    const whole: Buffer[] = [];
    opener.openTo(sealedSmall, { ...blob, id: hmac(keys.id, small), length: sealedSmall.length, rawLength: small.length }, 'p', 1024 * 1024, (p) => whole.push(p));
    expect(whole.length).toBe(1);
    expect(whole[0]!.equals(small)).toBe(true);
  });
});

describe('sealLazily', () => {
  it('makes the bytes seal makes, of the length it announces, one piece when asked', () => {
    const data = randomBytes(3 * 1024 * 1024 + 5);
    const lazy = sealLazily(keys.encryption, data, BLOB_AAD, 1024 * 1024);
    expect(lazy.length).toBe(data.length + 28);
    const parts: Buffer[] = [];
    for (const p of lazy.pieces) {
      expect(p.length).toBeLessThanOrEqual(1024 * 1024);
      parts.push(p);
    }
    expect(parts.length).toBe(1 + 4 + 1); // nonce, four pieces of ciphertext, tag
    const all = Buffer.concat(parts);
    expect(all.length).toBe(lazy.length);
    expect(open(keys.encryption, all, BLOB_AAD).equals(data)).toBe(true);
    // A second lazy seal of the same bytes uses another nonce.
    const again = Buffer.concat([...sealLazily(keys.encryption, data, BLOB_AAD, 1024 * 1024).pieces]);
    expect(again.subarray(0, 12).equals(all.subarray(0, 12))).toBe(false);
  });
});

// What a restore or verify worker counts as garbage made by opening chunks (BlobOpener.takeMade): it collects after
// every few MiB of it, so a count that misses the 256 KiB group opened for one 4 KiB page lets tens of MB wait.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { compressChunk } from '../../src-main/engine/vault/compress.js';
import { hmac, open, seal, sealLazily } from '../../src-main/engine/vault/crypto.js';
import { BLOB_AAD, BlobOpener, BlobType, GROUP_AAD, ID_GROUP_AAD, dataBlobAad, groupPlaintext, type PackBlob } from '../../src-main/engine/vault/pack.js';

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
    const opener = new BlobOpener(keys, true);
    expect(opener.open(g.sealed, g.members[5]!, 'p').equals(g.pages[5]!)).toBe(true);
    expect(opener.takeMade()).toBe(g.sealed.length + 64 * 4096);
    expect(opener.open(g.sealed, g.members[6]!, 'p').equals(g.pages[6]!)).toBe(true);
    expect(opener.check(g.sealed, g.members[7]!, 'p')).toBe(4096);
    expect(opener.takeMade()).toBe(0);
  });

  it.each([false, true])('counts a file chunk as its decrypted bytes, whether opened whole or checked in pieces (ids bound: %s)', (bound) => {
    const photo = randomBytes(700 * 1024);
    const id = hmac(keys.id, photo);
    const sealed = seal(keys.encryption, photo, dataBlobAad(id, bound));
    const blob: PackBlob = { id, type: BlobType.Data, compression: 0, offset: 0, length: sealed.length, rawLength: photo.length };
    const opener = new BlobOpener(keys, bound);
    expect(opener.open(sealed, blob, 'p').equals(photo)).toBe(true);
    expect(opener.takeMade()).toBe(sealed.length);
    expect(opener.check(sealed, blob, 'p')).toBe(photo.length);
    expect(opener.takeMade()).toBe(sealed.length);
  });

  it.each([false, true])('opens a large uncompressed chunk in pieces no larger than asked, and throws once the pieces do not add up (ids bound: %s)', (bound) => {
    const photo = randomBytes(3 * 1024 * 1024 + 17);
    const id = hmac(keys.id, photo);
    const sealed = seal(keys.encryption, photo, dataBlobAad(id, bound));
    const blob: PackBlob = { id, type: BlobType.Data, compression: 0, offset: 0, length: sealed.length, rawLength: photo.length };
    const opener = new BlobOpener(keys, bound);
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
    // The caller's own failure (a full restore target) is reported as itself, not as damage to the vault.
    const full = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    expect(() =>
      opener.openTo(sealed, blob, 'p', 1024 * 1024, () => {
        throw full;
      }),
    ).toThrow(full);
    // A small chunk comes whole.
    const small = randomBytes(1000);
    const smallId = hmac(keys.id, small);
    const sealedSmall = seal(keys.encryption, small, dataBlobAad(smallId, bound));
    const whole: Buffer[] = [];
    opener.openTo(sealedSmall, { ...blob, id: smallId, length: sealedSmall.length, rawLength: small.length }, 'p', 1024 * 1024, (p) => whole.push(p));
    expect(whole.length).toBe(1);
    expect(whole[0]!.equals(small)).toBe(true);
  });
});

describe('a data blob put in place of another of the same length', () => {
  // Someone with write access to the drive (not the key) swaps two sealed photos, or two copies of one pack's blob.
  // Each still authenticates on its own; what must fail is opening it as the chunk the index names.
  const a = randomBytes(300 * 1024);
  const b = randomBytes(300 * 1024);
  const entry = (id: Buffer, sealed: Buffer): PackBlob => ({ id, type: BlobType.Data, compression: 0, offset: 0, length: sealed.length, rawLength: a.length });

  it.each([
    ['format 3, small pieces', true, 1024],
    ['format 3, whole', true, 1024 * 1024],
    ['format 2, small pieces', false, 1024],
    ['format 2, whole', false, 1024 * 1024],
  ])('is refused (%s)', (_name, bound, piece) => {
    const idA = hmac(keys.id, a);
    const sealedB = seal(keys.encryption, b, dataBlobAad(hmac(keys.id, b), bound));
    const opener = new BlobOpener(keys, bound);
    // Format 3 fails at the tag (the aad names another chunk), format 2 at the hash of the plaintext.
    const why = bound ? /authentication failed/ : /does not match its id/;
    expect(() => opener.openTo(sealedB, entry(idA, sealedB), 'p', piece, () => undefined)).toThrow(why);
    expect(() => opener.check(sealedB, entry(idA, sealedB), 'p')).toThrow(why);
    expect(() => opener.open(sealedB, entry(idA, sealedB), 'p')).toThrow(why);
  });

  it('a format 2 blob does not open as format 3, nor the other way round', () => {
    const id = hmac(keys.id, a);
    const old = seal(keys.encryption, a, BLOB_AAD);
    const bound = seal(keys.encryption, a, dataBlobAad(id, true));
    expect(() => new BlobOpener(keys, true).open(old, entry(id, old), 'p')).toThrow(/authentication failed/);
    expect(() => new BlobOpener(keys, false).open(bound, entry(id, bound), 'p')).toThrow(/authentication failed/);
    expect(new BlobOpener(keys, true).open(bound, entry(id, bound), 'p').equals(a)).toBe(true);
  });
});

describe('a group member (database page) that is not the chunk named', () => {
  // The index names page A at a place in a group where another page is: a group swapped for another of the same
  // length, or an index that points wrong. A format 4 group (IdGroup) holds each member's id before its bytes, and
  // the reader compares it instead of hashing the page; a format 2-3 group's member is hashed.
  const pages = Array.from({ length: 8 }, (_, i) => Buffer.alloc(4096, `page ${i} `));
  const ids = pages.map((p) => hmac(keys.id, p));

  function sealedGroup(withIds: boolean): { sealed: Buffer; compression: number } {
    const { payload, compression } = compressChunk(groupPlaintext(pages.map((p, i) => ({ id: ids[i]!, data: p })), withIds));
    return { sealed: seal(keys.encryption, payload, withIds ? ID_GROUP_AAD : GROUP_AAD), compression };
  }
  const member = (withIds: boolean, g: { sealed: Buffer; compression: number }, i: number, id = ids[i]!): PackBlob => {
    const span = (withIds ? 32 : 0) + 4096;
    return { id, type: withIds ? BlobType.IdMember : BlobType.Member, compression: g.compression, offset: 0, length: g.sealed.length, rawLength: 4096, inner: i * span + (withIds ? 32 : 0), groupRaw: 8 * span };
  };

  it.each([true, false])('opens every member as itself, and refuses it under another id (ids in the group: %s)', (withIds) => {
    const g = sealedGroup(withIds);
    const opener = new BlobOpener(keys, true);
    for (let i = 0; i < 8; i++) expect(opener.open(g.sealed, member(withIds, g, i), 'p').equals(pages[i]!)).toBe(true);
    const why = withIds ? /holds another chunk in its place/ : /does not match its id/;
    expect(() => new BlobOpener(keys, true).open(g.sealed, member(withIds, g, 3, ids[4]), 'p')).toThrow(why);
    expect(() => new BlobOpener(keys, true).check(g.sealed, member(withIds, g, 3, ids[4]), 'p')).toThrow(why);
  });

  it('an IdGroup does not open as a plain group, nor the other way round', () => {
    const withIds = sealedGroup(true);
    const without = sealedGroup(false);
    expect(() => new BlobOpener(keys, true).open(withIds.sealed, member(false, withIds, 0), 'p')).toThrow(/authentication failed/);
    expect(() => new BlobOpener(keys, true).open(without.sealed, member(true, without, 0), 'p')).toThrow(/authentication failed/);
  });
});

describe('sealLazily', () => {
  // 1 MiB pieces for compressed chunks, 64 KiB for chunks stored as they are (engine-worker.ts, decision 0032).
  it.each([1024 * 1024, 64 * 1024])('makes the bytes seal makes, of the length it announces, in pieces of at most %i bytes', (piece) => {
    const data = randomBytes(3 * 1024 * 1024 + 5);
    const lazy = sealLazily(keys.encryption, data, BLOB_AAD, piece);
    expect(lazy.length).toBe(data.length + 28);
    const parts: Buffer[] = [];
    for (const p of lazy.pieces) {
      expect(p.length).toBeLessThanOrEqual(piece);
      parts.push(p);
    }
    expect(parts.length).toBe(1 + Math.ceil(data.length / piece) + 1); // nonce, the pieces of ciphertext, tag
    const all = Buffer.concat(parts);
    expect(all.length).toBe(lazy.length);
    expect(open(keys.encryption, all, BLOB_AAD).equals(data)).toBe(true);
    // A second lazy seal of the same bytes uses another nonce.
    const again = Buffer.concat([...sealLazily(keys.encryption, data, BLOB_AAD, piece).pieces]);
    expect(again.subarray(0, 12).equals(all.subarray(0, 12))).toBe(false);
  });
});

// The pack-header layout with groups (FORMAT.md, "Packs"): what a stranger's reader must get right.
import { describe, expect, it } from 'vitest';
import { BlobType, blobRuns, decodePackHeader, encodePackHeader, headerCheckWork, headerContentBytes, packContentBytes, type PackBlob } from '../../src-main/engine/vault/pack.js';

const id = (n: number): Buffer => Buffer.alloc(32, n);

/** data(100) | group of 3 members (sealed 300 bytes, 4096 * 3 raw) | data(50) */
const blobs: PackBlob[] = [
  { id: id(1), type: BlobType.Data, compression: 0, offset: 0, length: 100, rawLength: 72 },
  { id: id(2), type: BlobType.Member, compression: 2, offset: 100, length: 300, rawLength: 4096, inner: 0, groupRaw: 12288 },
  { id: id(3), type: BlobType.Member, compression: 2, offset: 100, length: 300, rawLength: 4096, inner: 4096, groupRaw: 12288 },
  { id: id(4), type: BlobType.Member, compression: 2, offset: 100, length: 300, rawLength: 4096, inner: 8192, groupRaw: 12288 },
  { id: id(5), type: BlobType.Data, compression: 2, offset: 400, length: 50, rawLength: 900 },
];

describe('pack header with groups', () => {
  it('writes one Group entry before its members and reads back every chunk with its place', () => {
    const enc = encodePackHeader(blobs);
    expect(enc.readUInt32LE(4)).toBe(6); // 2 data + 1 group + 3 members
    const groupEntry = enc.subarray(8 + 42, 8 + 84);
    expect(groupEntry.readUInt8(0)).toBe(BlobType.Group);
    expect(groupEntry.readUInt32LE(2)).toBe(300);
    expect(groupEntry.readUInt32LE(6)).toBe(12288);
    expect(groupEntry.subarray(10).equals(Buffer.alloc(32))).toBe(true);
    expect(decodePackHeader(enc)).toEqual(blobs);
    expect(packContentBytes(blobs)).toBe(450);
    expect(headerContentBytes(enc)).toBe(450); // each group once, from the header's bytes alone
    // Work to check it: every chunk's bytes and 8 KiB each, the compressed group's and data blob's bytes again.
    expect(headerCheckWork(enc)).toBe(72 + 3 * 4096 + 900 + 5 * 8192 + 12288 + 900);
  });

  it('format 4: an IdGroup entry, whose members each sit after their 32-byte id in its plaintext', () => {
    // data(100) | IdGroup of 2 members (sealed 200 bytes, 2 * (32 + 4096) raw)
    const withIds: PackBlob[] = [
      { id: id(1), type: BlobType.Data, compression: 0, offset: 0, length: 100, rawLength: 72 },
      { id: id(2), type: BlobType.IdMember, compression: 2, offset: 100, length: 200, rawLength: 4096, inner: 32, groupRaw: 8256 },
      { id: id(3), type: BlobType.IdMember, compression: 2, offset: 100, length: 200, rawLength: 4096, inner: 4160, groupRaw: 8256 },
    ];
    const enc = encodePackHeader(withIds);
    expect(enc.readUInt32LE(4)).toBe(4);
    expect(enc.readUInt8(8 + 42)).toBe(BlobType.IdGroup);
    expect(enc.readUInt32LE(8 + 42 + 6)).toBe(8256);
    expect(enc.readUInt8(8 + 84)).toBe(BlobType.IdMember);
    expect(decodePackHeader(enc)).toEqual(withIds);
    expect(headerContentBytes(enc)).toBe(300);
    // Without room for the ids the group does not add up; a plain Member inside an IdGroup is refused.
    const noIds = Buffer.from(enc);
    noIds.writeUInt32LE(8192, 8 + 42 + 6);
    expect(() => decodePackHeader(noIds)).toThrow(/does not add up/);
    const mixed = Buffer.from(enc);
    mixed.writeUInt8(BlobType.Member, 8 + 84);
    expect(() => decodePackHeader(mixed)).toThrow(/wrong kind/);
    const plain = encodePackHeader(blobs);
    plain.writeUInt8(BlobType.IdMember, 8 + 84);
    expect(() => decodePackHeader(plain)).toThrow(/wrong kind/);
  });

  it('ranks a pack of compressed database pages above one photo of the same size for verify', () => {
    const raw = 64 * 4096;
    const photo = encodePackHeader([{ id: id(1), type: BlobType.Data, compression: 0, offset: 0, length: raw + 28, rawLength: raw }]);
    const pages = encodePackHeader(
      Array.from({ length: 64 }, (_, i) => ({ id: id(i), type: BlobType.Member, compression: 2, offset: 0, length: 90_000, rawLength: 4096, inner: i * 4096, groupRaw: raw })),
    );
    expect(headerCheckWork(pages)).toBeGreaterThan(3 * headerCheckWork(photo));
  });

  it('refuses a group whose members do not add up, and members outside a group', () => {
    const enc = encodePackHeader(blobs);
    const short = Buffer.from(enc);
    short.writeUInt32LE(12289, 8 + 42 + 6);
    expect(() => decodePackHeader(short)).toThrow(/does not add up/);
    const orphan = Buffer.from(enc);
    orphan.writeUInt8(BlobType.Data, 8 + 42); // the group entry turned into a data entry: its members have no group
    expect(() => decodePackHeader(orphan)).toThrow(/outside a group/);
    const unknown = Buffer.from(enc);
    unknown.writeUInt8(9, 8);
    expect(() => decodePackHeader(unknown)).toThrow(/unknown blob type 9/);
  });

  it('reads each stretch once: consecutive blobs and members of one group in one run', () => {
    const list = blobs.map((blob) => ({ pack: 'p', blob }));
    expect(blobRuns(list, 1 << 20).map((r) => [r.start, r.end, r.from, r.to])).toEqual([[0, 450, 0, 5]]);
    expect(blobRuns(list, 100).map((r) => [r.start, r.end, r.from, r.to])).toEqual([[0, 100, 0, 1], [100, 400, 1, 4], [400, 450, 4, 5]]);
    // No run passes maxBytes by taking one more blob: under 350 the group's 300 bytes do not join the first 100,
    // the last 50 join the group. (A blob larger than maxBytes is a run of its own, as under 100.)
    expect(blobRuns(list, 350).map((r) => [r.start, r.end])).toEqual([[0, 100], [100, 450]]);
    expect(blobRuns(list, 400).map((r) => [r.start, r.end])).toEqual([[0, 400], [400, 450]]);
    // A file that uses the group's third member, then the first data blob and the second member (which follow each
    // other in the pack), then a blob of another pack.
    const jumpy = [list[3]!, list[0]!, list[2]!, { pack: 'q', blob: blobs[0]! }];
    expect(blobRuns(jumpy, 1 << 20).map((r) => [r.pack, r.start, r.end])).toEqual([['p', 100, 400], ['p', 0, 400], ['q', 0, 100]]);
  });
});

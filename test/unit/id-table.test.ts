// The flat chunk-id table and the index built on it: every id found, none invented, the first pack of a chunk wins.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { IdTable } from '../../src-main/engine/vault/id-table.js';
import { MasterIndex } from '../../src-main/engine/vault/index-file.js';
import { BlobType, blobRef, type PackBlob } from '../../src-main/engine/vault/pack.js';

describe('IdTable', () => {
  it('finds every id it was given across many growths and nothing else', () => {
    const t = new IdTable(16);
    const ids = Array.from({ length: 20_000 }, () => randomBytes(32));
    ids.forEach((id, i) => expect(t.add(id)).toBe(i));
    expect(t.size).toBe(ids.length);
    ids.forEach((id, i) => expect(t.find(id)).toBe(i));
    ids.forEach((id, i) => expect(t.id(i).equals(id)).toBe(true));
    for (let i = 0; i < 2000; i++) expect(t.has(randomBytes(32))).toBe(false);
    expect(t.add(ids[7]!)).toBe(-1);
    expect(t.size).toBe(ids.length);
    expect(t.all().equals(Buffer.concat(ids))).toBe(true);
  });

  it('tells apart ids that share their first bytes (the hash), and reads ids inside a larger buffer', () => {
    const t = new IdTable();
    const a = Buffer.alloc(32, 1);
    const b = Buffer.from(a);
    b[31] = 2;
    t.add(a);
    expect(t.has(b)).toBe(false);
    expect(t.add(b)).toBe(1);
    const flat = Buffer.concat([Buffer.alloc(5), b]);
    expect(t.find(flat, 5)).toBe(1);
  });

  it('is read by workers through one shared copy: every id found, nothing else, and no writes', () => {
    const t = new IdTable(16);
    const ids = Array.from({ length: 3000 }, () => randomBytes(32));
    for (const id of ids) t.add(id);
    const shared = t.toShared();
    expect(shared.ids.buffer).toBeInstanceOf(SharedArrayBuffer);
    // As a worker gets it in its workerData: shared memory, not a copy.
    const view = IdTable.view(structuredClone(shared));
    expect(view.size).toBe(ids.length);
    ids.forEach((id, i) => expect(view.find(id)).toBe(i));
    for (let i = 0; i < 500; i++) expect(view.has(randomBytes(32))).toBe(false);
    expect(() => view.add(randomBytes(32))).toThrow(/read-only/);
    // Added to the table afterwards: not in the copy made before.
    const later = randomBytes(32);
    t.add(later);
    expect(view.has(later)).toBe(false);
    expect(IdTable.view(new IdTable().toShared()).has(ids[0]!)).toBe(false);
  });
});

describe('MasterIndex', () => {
  const id = (n: number): Buffer => Buffer.alloc(32, n);
  const pack1: PackBlob[] = [
    { id: id(1), type: BlobType.Data, compression: 0, offset: 0, length: 100, rawLength: 72 },
    { id: id(2), type: BlobType.Member, compression: 2, offset: 100, length: 300, rawLength: 4096, inner: 0, groupRaw: 8192 },
    { id: id(3), type: BlobType.Member, compression: 2, offset: 100, length: 300, rawLength: 4096, inner: 4096, groupRaw: 8192 },
  ];
  const pack2: PackBlob[] = [
    { id: id(3), type: BlobType.Data, compression: 0, offset: 0, length: 4124, rawLength: 4096 },
    { id: id(4), type: BlobType.Data, compression: 0, offset: 4124, length: 60, rawLength: 32 },
  ];

  it('answers with the blob as its pack lists it, from the first pack that holds the chunk', () => {
    const idx = new MasterIndex();
    idx.add({ id: 'aa'.repeat(32), blobs: pack1 });
    idx.add({ id: 'bb'.repeat(32), blobs: pack2 });
    expect(idx.size).toBe(4);
    expect(idx.get(id(2))).toEqual({ pack: 'aa'.repeat(32), blob: pack1[1] });
    expect(idx.get(id(3).toString('hex'))).toEqual({ pack: 'aa'.repeat(32), blob: pack1[2] });
    expect(idx.get(id(4))).toEqual({ pack: 'bb'.repeat(32), blob: pack2[1] });
    expect(idx.get(id(1))!.blob).not.toHaveProperty('inner');
    expect(idx.has(id(9))).toBe(false);
    expect(idx.get('not hex')).toBeUndefined();
    expect(idx.packs.get('bb'.repeat(32))!.blobs).toEqual(pack2);
    expect(idx.packs.get('aa'.repeat(32))!.contentBytes).toBe(400);
  });

  it('gives a worker the places of chunks by entry number, as get() would, each pack named once', () => {
    const idx = new MasterIndex();
    idx.add({ id: 'aa'.repeat(32), blobs: pack1 });
    idx.add({ id: 'bb'.repeat(32), blobs: pack2 });
    const wanted = [id(4), id(2), id(1), id(3), id(4)];
    const flat = Buffer.concat([Buffer.alloc(3), ...wanted]);
    const entries = Int32Array.from(wanted, (_, k) => idx.locate(flat, 3 + k * 32));
    expect(idx.locate(Buffer.concat([Buffer.alloc(3), id(9)]), 3)).toBe(-1);
    expect(idx.locate(flat, flat.length - 31)).toBe(-1);
    expect([...entries].map((e) => idx.rawLength(e))).toEqual([32, 4096, 72, 4096, 32]);
    // As a worker gets it: a structured clone of the flat arrays.
    const refs = structuredClone(idx.refs(entries, 1, 5));
    expect(refs.packs).toEqual(['aa'.repeat(32), 'bb'.repeat(32)]);
    expect(blobRef(refs, 1)).not.toHaveProperty('inner');
    expect([0, 1, 2, 3].map((i) => ({ pack: refs.packs[refs.packOf[i]!], blob: blobRef(refs, i) }))).toEqual(wanted.slice(1).map((w) => idx.get(w)));
  });

  it('refuses a pack whose header does not add up, and keeps a pack listed twice once', () => {
    const idx = new MasterIndex();
    const bad = pack1.map((b) => ({ ...b }));
    bad[2]!.rawLength = 1;
    expect(() => idx.add({ id: 'cc'.repeat(32), blobs: bad })).toThrow(/does not add up/);
    expect(idx.size).toBe(0);
    idx.add({ id: 'aa'.repeat(32), blobs: pack1 });
    idx.add({ id: 'aa'.repeat(32), blobs: pack2 });
    expect(idx.size).toBe(3);
    expect(idx.packs.size).toBe(1);
  });
});

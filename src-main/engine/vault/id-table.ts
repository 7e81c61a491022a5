// A set of 32-byte chunk ids in flat memory, for the index and the workers' "already stored" check. As the keys of a
// Map, a chunk id costs ~250 bytes (a 64-character hex string, a Buffer, the entry); here it costs 32 bytes plus two
// 4-byte slots of an open-addressing table (decision 0014). Ids are keyed HMACs, so their first four bytes are
// already a uniform hash.
const ID = 32;

/** An IdTable's memory, shared between threads: its ids and slots in SharedArrayBuffers (toShared, view). */
export interface SharedIdTable {
  ids: Uint8Array;
  slots: Int32Array;
  count: number;
}

export class IdTable {
  private ids: Buffer;
  private slots: Int32Array;
  private count = 0;
  private readonly frozen: boolean = false;

  constructor(capacity = 1024, shared?: SharedIdTable) {
    if (shared) {
      this.ids = Buffer.from(shared.ids.buffer, shared.ids.byteOffset, shared.ids.byteLength);
      this.slots = shared.slots;
      this.count = shared.count;
      this.frozen = true;
      return;
    }
    this.ids = Buffer.allocUnsafeSlow(Math.max(16, capacity) * ID);
    this.slots = new Int32Array(slotsFor(Math.max(16, capacity)));
  }

  /** A copy of this table in shared memory, sized to what it holds: engine workers look ids up in the one copy
   * (view) instead of each building its own from a list (~7 MB per worker for the bench vault's 58,000 chunks). */
  toShared(): SharedIdTable {
    const ids = new Uint8Array(new SharedArrayBuffer(Math.max(1, this.count) * ID));
    ids.set(this.ids.subarray(0, this.count * ID));
    // The slots as they are (a copy, not placed again: ~10 ms of JavaScript for 57,500 ids); at most twice the size.
    const slots = new Int32Array(new SharedArrayBuffer(this.slots.byteLength));
    slots.set(this.slots);
    return { ids, slots, count: this.count };
  }

  /** This table's memory as it is: `ids` holds `count` ids (of `capacity`), `slots` the hash slots (index-cache.ts). */
  raw(): { ids: Buffer; slots: Int32Array; count: number; capacity: number } {
    return { ids: this.ids.subarray(0, this.count * ID), slots: this.slots, count: this.count, capacity: this.ids.length / ID };
  }

  /** A table made again from raw()'s pieces, without placing each id: the caller vouches that they came from raw(). */
  static fromRaw(ids: Uint8Array, slots: Int32Array, count: number, capacity: number): IdTable {
    if (capacity < count || ids.length !== count * ID || slots.length !== slotCountFor(capacity)) throw new Error('an id table does not add up');
    const t = new IdTable(0);
    t.ids = Buffer.allocUnsafeSlow(Math.max(16, capacity) * ID);
    t.ids.set(ids);
    t.slots = slots;
    t.count = count;
    return t;
  }

  /** A read-only table over shared memory made by toShared (in another thread, as a rule). */
  static view(shared: SharedIdTable): IdTable {
    return new IdTable(0, shared);
  }

  get size(): number {
    return this.count;
  }

  /** The entry number of the id at `buf[at..at+32]`, or -1. */
  find(buf: Buffer, at = 0): number {
    const slots = this.slots;
    const mask = slots.length - 1;
    let s = buf.readUInt32LE(at) & mask;
    for (;;) {
      const e = slots[s]! - 1;
      if (e < 0) return -1;
      if (this.sameId(e, buf, at)) return e;
      s = (s + 1) & mask;
    }
  }

  /** Eight 4-byte words compared in JavaScript: Buffer.compare's native call cost ~5x more per lookup. */
  private sameId(e: number, buf: Buffer, at: number): boolean {
    const ids = this.ids;
    for (let k = 0, d = e * ID; k < ID; k += 4) if (ids.readInt32LE(d + k) !== buf.readInt32LE(at + k)) return false;
    return true;
  }

  has(buf: Buffer, at = 0): boolean {
    return this.find(buf, at) >= 0;
  }

  /** Add the id at `buf[at..at+32]`: its new entry number, or -1 when it was already there. Entries are numbered
   * 0, 1, 2, ... in the order they were added. */
  add(buf: Buffer, at = 0): number {
    if (this.frozen) throw new Error('a shared id table is read-only');
    if (this.find(buf, at) >= 0) return -1;
    if ((this.count + 1) * ID > this.ids.length) this.grow();
    const e = this.count++;
    // 32 bytes by hand: Buffer.copy's set-up costs ~5x more than the copy itself.
    const ids = this.ids;
    for (let k = 0, d = e * ID; k < ID; k++) ids[d + k] = buf[at + k]!;
    this.place(e);
    return e;
  }

  /** The id of entry e (a view: valid for good, never to be written to). */
  id(e: number): Buffer {
    return this.ids.subarray(e * ID, e * ID + ID);
  }

  /** Every id, in entry order, laid end to end (a view). */
  all(): Buffer {
    return this.ids.subarray(0, this.count * ID);
  }

  private place(e: number): void {
    const slots = this.slots;
    const mask = slots.length - 1;
    let s = this.ids.readUInt32LE(e * ID) & mask;
    while (slots[s] !== 0) s = (s + 1) & mask;
    slots[s] = e + 1;
  }

  private grow(): void {
    const cap = (this.ids.length / ID) * 2;
    const ids = Buffer.allocUnsafeSlow(cap * ID);
    this.ids.copy(ids, 0, 0, this.count * ID);
    this.ids = ids;
    this.slots = new Int32Array(slotsFor(cap));
    for (let e = 0; e < this.count; e++) this.place(e);
  }
}

/** How many slots a table of this capacity has (raw, fromRaw). */
export function slotCountFor(capacity: number): number {
  return slotsFor(Math.max(16, capacity));
}

/** A power of two at least twice the capacity: probes stay short (load factor at most 1/2). */
function slotsFor(capacity: number): number {
  return 2 ** Math.ceil(Math.log2(capacity * 2));
}

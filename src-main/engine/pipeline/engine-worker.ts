// The engine's worker thread: the CPU-heavy, byte-touching half of backup, restore and verify. Each worker reads
// its own files, so reading, hashing, compressing, encrypting and writing overlap across cores while the main
// thread only keeps the books. Jobs run one at a time per worker, in the order they arrive.
import { spawn } from 'node:child_process';
import { createHash, createHmac } from 'node:crypto';
import * as path from 'node:path';
import * as fs from 'node:fs';
import { getHeapStatistics } from 'node:v8';
import { parentPort, workerData } from 'node:worker_threads';
import { FastCdc, FixedCutter, gearTable, type Cutter } from '../chunker/chunkers.js';
import { Compression, compressChunk, compressorsMade } from '../vault/compress.js';
import { IdTable } from '../vault/id-table.js';
import { sealLazily, sealParts } from '../vault/crypto.js';
import type { MasterKeys } from '../vault/keys.js';
import { ArrivingBlob, BlobOpener, BlobType, ChunkIntegrityError, GROUP_AAD, ID_GROUP_AAD, MEMBER_ID_BYTES, Ref, REF_WIDTH, blobRef, blobRuns, dataBlobAad, decodePackHeader, runsOf, encodePackHeader, packTailMatches, parsePack, type PackBlob } from '../vault/pack.js';
import { LocalStorage } from '../vault/storage.js';
import { alignedMemory, DIRECT_ALIGN, O_DIRECT, refusesDirect } from '../vault/direct-io.js';
import { PackWriter } from './pack-writer.js';
import { collectGarbage } from './young-generation.js';
import { type ChunkJob, type ChunkResult, type CommandJob, type JobMessage, type JobReply, type JobValue, type RestoreJob, type RestoreJobResult, type VerifyJob, type WorkerInit, type WorkerJob, type WorkerEvent } from './protocol.js';

const init = workerData as WorkerInit;
const keys: MasterKeys = { encryption: Buffer.from(init.encryptionKey), id: Buffer.from(init.idKey) };
const port = parentPort!;

// ---------------------------------------------------------------- backup: chunk, name, dedup, compress, seal, pack
/** Chunks the vault held when the backup began (shared by all workers, read-only), and those this worker has
 * stored since. */
const stored = init.knownIds ? IdTable.view(init.knownIds) : undefined;
const added = new IdTable(4096);
/** Whether the chunk is new to the vault (and from now on known to this worker). */
function isNew(id: Buffer): boolean {
  return !stored?.has(id) && added.add(id) >= 0;
}
const fileCutter = new FastCdc(gearTable(keys.id), init.cdc.min, init.cdc.avg, init.cdc.max);
/** A file that fits in one chunk of the largest size is not cut (vaults whose config says so, decision 0020): its
 * bytes are named, compressed and sealed once, and FastCDC's scan of it is skipped. No chunk is larger than before. */
const wholeMax = Math.min(init.cdc.whole ?? 0, init.cdc.max);
const wholeCutter = new FixedCutter(Math.max(1, wholeMax));
const storage = new LocalStorage(init.location);
const writer = new PackWriter(
  storage,
  keys,
  init.packSize,
  (pack, size) => {
    const header = encodePackHeader(pack.blobs);
    const ev: WorkerEvent = { type: 'pack', id: pack.id, size, header };
    port.postMessage(ev);
  },
  init.packNaming,
  () => collectNow(),
);
let readBuf: Buffer | undefined;

// glibc's malloc hands out blocks above its mmap threshold (128 KiB at first) as fresh mappings and returns freed
// memory above its trim threshold to the kernel; a chunk's buffers (decrypted, decompressed, sealed: 0.25-8 MiB
// each) then cost a page fault and a zeroed page per 4 KiB, every time. Freeing one block of just over WARM_BLOCK
// moves both thresholds up (to its size, and twice that), and glibc moves them further as larger blocks are freed,
// so these buffers reuse memory the process holds from the first chunk on (decision 0015). It was a block just
// under 32 MiB until decision 0018 (the trim threshold of 64 MiB kept every arena at its high-water mark, 7-14 MB
// more at the peaks of a first backup and of verify), then just over 1 MiB until decision 0033: a trim threshold of
// ~2 MiB let a worker's arena hand back the ~4 MiB of sealed pieces each young collection frees (a backup collects
// after every 4 MiB written), whenever they lay at its top, and fault them in again for the next 4 MiB. First
// backups of a freshly copied tree fell into that in 3 of 7 runs (240,000-310,000 page faults, 5.7-8.3 s instead of
// ~4 s); with a trim threshold of ~8 MiB in none of 7. Elsewhere a no-op.
const WARM_BLOCK = 4 * 1024 * 1024;
{
  let warm: Buffer | undefined = Buffer.allocUnsafeSlow(WARM_BLOCK + 64 * 1024);
  warm[0] = 1;
  warm = undefined;
  collectGarbage();
}

// Compressor instances and sealed chunks are native memory that V8's heuristics under-count; without help a
// worker cutting a 200 MB database into 4 KiB pages grows by ~150 MB. A collection of the young generation (where
// they all are) every few thousand compressor instances, after each 4 MiB of writes (backup) or 4 MiB of chunks
// opened (restore, verify), bounds what waits for collection. A full collection did the same for ~0.3 s more of a
// first backup (5.35-5.98 against 5.11-5.81 s); one every 32 MiB took ~30 MB off its peak for ~1 CPU-s.
let gcMark = 0;
let openedSinceGc = 0;
/** Restore and verify collect after every 4 MiB of buffers made by opening chunks (BlobOpener.takeMade: decrypted
 * and decompressed bytes): they are garbage as soon as the chunk is written or checked. Counting the pack bytes
 * read, a run of compressed database groups had left ~4x its size waiting; counting the plaintext returned, a
 * restore that takes a few pages from each of many groups had left most of each 256 KiB group waiting. */
const OPENED_PER_GC = 4 * 1024 * 1024;
function maybeCollect(openedBytes: number): void {
  openedSinceGc += openedBytes;
  if (compressorsMade - gcMark < 4000 && openedSinceGc < OPENED_PER_GC) return;
  collectNow();
}
/** A backup collects after every 4 MiB its pack writer has taken: the writer copies each sealed blob into its write
 * blocks at once (decision 0019), so nothing sealed before is still referenced, the collection frees it all and
 * moves nothing to the old generation. (Before the copy, sealed pieces waiting for their write outlived two
 * collections, moved to the old generation and waited there for a full one: a first backup peaked at 367-385 MB.) */
function collectNow(): void {
  gcMark = compressorsMade;
  openedSinceGc = 0;
  collectGarbage('minor');
  // A buffer still referenced at two young collections (a database group kept by the opener for its next pages, a
  // piece waiting for its write) moves to the old generation, where it waits for a full collection; V8 starts one
  // only when such bytes have grown by tens of MB. When what this collection left exceeds what the last full one
  // left by PROMOTED_MAX, collect in full now (~5 ms). Buffers are freed within the collection (the entry point
  // turns off concurrent sweeping of their memory, young-generation.ts), so the figure read here is current.
  const external = getHeapStatistics().external_memory;
  if (external > externalAfterFull + (streaming > 0 ? PROMOTED_MAX_SHARED : PROMOTED_MAX)) {
    collectGarbage('major');
    externalAfterFull = getHeapStatistics().external_memory;
  }
}
/** Bytes of buffers (ArrayBuffer backing stores) alive after this worker's last full collection. */
let externalAfterFull = 0;
const PROMOTED_MAX = 16 * 1024 * 1024;
/** While a streamed restore job runs beside another job (decision 0036), each collection finds the other job's
 * buffers still in use and promotes them: 8 MiB kept a restore's peak at 172-190 MB instead of 190-198 MB. */
const PROMOTED_MAX_SHARED = 8 * 1024 * 1024;

class SourceError extends Error {
  constructor(readonly code: string | undefined, message: string) {
    super(message);
  }
}

function sourceCall<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new SourceError(e.code, e.message);
  }
}

interface ChunkTally {
  /** The chunk ids so far, 32 bytes each (count of them), copied in as each is made. Kept as a list of digests until
   * the job ended, a database segment's ~8,000 ids survived young collections and were promoted: hashing 224 MB of
   * pages took 554 against 383 ms (best of five, the engine's V8 flags). */
  ids: Buffer;
  count: number;
  bytesRead: number;
  chunksNew: number;
  bytesNew: number;
  /** New small chunks waiting to be stored together (a database, format 2). */
  group?: Group;
}

/** Small chunks (database pages, dump pieces) gathered into one blob of about GROUP_BYTES: one compression and one
 * seal instead of one per 4 KiB page, which costs 3x less CPU and compresses ~25% better (decision 0013). */
const GROUP_BYTES = 256 * 1024;
const GROUP_MEMBER_MAX = 64 * 1024;

class Group {
  readonly buf = Buffer.allocUnsafeSlow(GROUP_BYTES + MEMBER_ID_BYTES + GROUP_MEMBER_MAX);
  members: Array<{ id: Buffer; rawLength: number }> = [];
  used = 0;
}
let groupBuf: Group | undefined;

/** A compressed chunk larger than this is sealed as the pack writer takes it, a piece of this size at a time
 * (sealLazily): whole files of up to 8 MiB are chunks (decision 0020), and their sealed copies had waited for
 * collection beside them. Smaller ones are sealed at once: sealing every chunk lazily took the first backup's peak
 * from ~197 to 259-280 MB (three runs; not explained). */
const SEAL_PIECE = 1024 * 1024;
/** The piece for a chunk stored as it is (a photo, a scan that does not compress): 64 KiB. Node zero-fills every
 * piece of AES-GCM output it makes; a 64 KiB piece is zeroed, encrypted into and copied into the pack's block while
 * it is still in the CPU's cache, and malloc hands the same memory back piece after piece (as long as the worker's
 * arena keeps what each collection frees: WARM_BLOCK, decision 0033), where 1 MiB pieces went through memory, often
 * into fresh pages. First backup 4.88 -> 4.37 s, 40,000-110,000 -> 27,000-37,000 page faults
 * (decision 0032). Compressed chunks keep SEAL_PIECE: in 64 KiB pieces the peak rose by ~15 MiB. */
const RAW_SEAL_PIECE = 64 * 1024;

/** Name one chunk; if new, compress, seal and add it to the pack being filled (or to the group being gathered).
 * A promise only when there is something to wait for (a blob going into a pack): most of a database's pages are
 * known already or only gathered, and awaiting each of them had cost ~0.5-1 us a page. */
function storeChunk(data: Buffer, tally: ChunkTally): Promise<void> | undefined {
  const id = createHmac('sha256', keys.id).update(data).digest();
  pushId(tally, id);
  if (!isNew(id)) return undefined;
  tally.chunksNew++;
  tally.bytesNew += data.length;
  const g = tally.group;
  if (g && data.length <= GROUP_MEMBER_MAX) {
    // Format 4: the member's id goes before its bytes (an IdGroup), so that readers need not hash it again.
    if (init.idGroups) {
      const buf = g.buf;
      for (let k = 0; k < MEMBER_ID_BYTES; k++) buf[g.used + k] = id[k]!;
      g.used += MEMBER_ID_BYTES;
    }
    data.copy(g.buf, g.used);
    g.used += data.length;
    g.members.push({ id, rawLength: data.length });
    return g.used >= GROUP_BYTES ? storeGroup(g) : undefined;
  }
  return storeBlob(id, data);
}

/** Compress, seal and add one new chunk to the pack being filled, as a blob of its own. */
async function storeBlob(id: Buffer, data: Buffer): Promise<void> {
  // A file's chunk is compressed at quality 1, whose output decodes ~1.7x faster; pages stay at 0 (compress.ts).
  const { payload, compression } = compressChunk(data, data.length > GROUP_MEMBER_MAX ? 1 : 0);
  const aad = dataBlobAad(id, init.boundIds);
  const piece = compression === Compression.None ? RAW_SEAL_PIECE : SEAL_PIECE;
  const sealed = payload.length > piece ? sealLazily(keys.encryption, payload, aad, piece) : sealParts(keys.encryption, payload, aad);
  await writer.add({ id, type: BlobType.Data, compression, rawLength: data.length, sealed });
  maybeCollect(0);
}

/** Compress and seal the gathered members as one blob. */
async function storeGroup(g: Group): Promise<void> {
  if (g.members.length === 0) return;
  const { payload, compression } = compressChunk(g.buf.subarray(0, g.used));
  const sealed = sealParts(keys.encryption, payload, init.idGroups ? ID_GROUP_AAD : GROUP_AAD);
  const members = g.members;
  g.members = [];
  g.used = 0;
  await writer.add({ members, ids: init.idGroups, compression, sealed });
  maybeCollect(0);
}

/** A tally for one job; a database's job gathers its small new chunks when the vault's format allows it. */
function newTally(group: boolean): ChunkTally {
  const t: ChunkTally = { ids: Buffer.allocUnsafe(64 * 32), count: 0, bytesRead: 0, chunksNew: 0, bytesNew: 0 };
  if (group && init.groups) t.group = groupBuf ??= new Group();
  return t;
}

async function tallyResult(t: ChunkTally): Promise<ChunkResult> {
  if (t.group) await storeGroup(t.group);
  // A copy of its own: a view would send the whole buffer it is part of.
  const out = Buffer.allocUnsafeSlow(t.count * 32);
  t.ids.copy(out, 0, 0, t.count * 32);
  return { ids: out, bytesRead: t.bytesRead, chunksNew: t.chunksNew, bytesNew: t.bytesNew };
}

function pushId(t: ChunkTally, id: Buffer): void {
  const at = t.count * 32;
  if (at + 32 > t.ids.length) {
    const grown = Buffer.allocUnsafeSlow(t.ids.length * 2);
    t.ids.copy(grown, 0, 0, at);
    t.ids = grown;
  }
  // 32 bytes by hand: Buffer.copy's set-up costs more than the copy (id-table.ts).
  const ids = t.ids;
  for (let k = 0; k < 32; k++) ids[at + k] = id[k]!;
  t.count++;
}

/** The worker's one read buffer, as much of it as this cutter needs: twice its largest chunk (16 MiB for files), at
 * least 4 MiB (a database's pages, a dump). Only the part a job reads into becomes resident memory, so a worker that
 * chunks database segments and files no larger than ~5 MB holds ~5 MB of it, not 16 (measured: the first backup's
 * peak ~20 MB lower; reading 32 MiB segments 4 MiB at a time instead of 16 changed nothing measurable). */
function readBuffer(cutter: Cutter): Buffer {
  const size = Math.max(4 * 1024 * 1024, cutter.max * 2);
  if (!readBuf || readBuf.length < size) readBuf = Buffer.allocUnsafeSlow(size);
  return readBuf.subarray(0, size);
}

async function chunkJob(job: ChunkJob): Promise<ChunkResult> {
  const fd = job.fd ?? sourceCall(() => fs.openSync(job.path, 'r'));
  const tally = newTally(!!job.group);
  let pos = job.offset;
  const end = job.length === undefined ? Number.POSITIVE_INFINITY : job.offset + job.length;
  let have = 0;
  let eof = false;
  try {
    let cutter: Cutter = fileCutter;
    if (job.fixed) cutter = new FixedCutter(job.fixed);
    else if (wholeMax > 0 && job.offset === 0 && job.length === undefined && sourceCall(() => fs.fstatSync(fd)).size <= wholeMax) cutter = wholeCutter;
    const buf = readBuffer(cutter);
    for (;;) {
      while (!eof && have < buf.length) {
        const want = Math.min(buf.length - have, end - pos);
        const n = want <= 0 ? 0 : sourceCall(() => fs.readSync(fd, buf, have, want, pos));
        if (n === 0) eof = true;
        have += n;
        pos += n;
        tally.bytesRead += n;
      }
      let p = 0;
      while (p < have && (eof || have - p >= cutter.max)) {
        const len = cutter.cut(buf, p, have);
        const waiting = storeChunk(buf.subarray(p, p + len), tally);
        if (waiting) await waiting;
        p += len;
      }
      if (eof && p >= have) break;
      buf.copyWithin(0, p, have);
      have -= p;
    }
  } finally {
    if (job.fd === undefined) fs.closeSync(fd);
  }
  return tallyResult(tally);
}

/** Run a command (pg_dump) and store its standard output as a chunked stream; it must exit with status 0. */
async function commandJob(job: CommandJob): Promise<ChunkResult> {
  const cutter = new FastCdc(gearTable(keys.id), job.cdc.min, job.cdc.avg, job.cdc.max);
  const buf = readBuffer(cutter);
  const tally = newTally(true);
  const child = spawn(job.command, job.args, { env: job.env, stdio: ['ignore', 'pipe', 'pipe'], windowsHide: true });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => {
    if (stderr.length < 64 * 1024) stderr += d;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal }));
  });
  exited.catch(() => undefined);
  let have = 0;
  try {
    for await (const piece of child.stdout as AsyncIterable<Buffer>) {
      let off = 0;
      while (off < piece.length) {
        const n = Math.min(piece.length - off, buf.length - have);
        piece.copy(buf, have, off, off + n);
        have += n;
        off += n;
        tally.bytesRead += n;
        if (have === buf.length) {
          let p = 0;
          while (have - p >= cutter.max) {
            const len = cutter.cut(buf, p, have);
            const waiting = storeChunk(buf.subarray(p, p + len), tally);
            if (waiting) await waiting;
            p += len;
          }
          buf.copyWithin(0, p, have);
          have -= p;
        }
      }
    }
    let p = 0;
    while (p < have) {
      const len = cutter.cut(buf, p, have);
      const waiting = storeChunk(buf.subarray(p, p + len), tally);
      if (waiting) await waiting;
      p += len;
    }
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  let ended: { code: number | null; signal: NodeJS.Signals | null };
  try {
    ended = await exited;
  } catch (err) {
    throw new SourceError((err as NodeJS.ErrnoException).code, `${path.basename(job.command)} could not be started: ${(err as Error).message}`);
  }
  if (ended.code !== 0) {
    const how = ended.signal ? `was killed (${ended.signal})` : `failed (exit status ${ended.code})`;
    const said = stderr.trim().split('\n').slice(-5).join(' | ');
    throw new SourceError('ECOMMAND', `${path.basename(job.command)} ${how}${said ? `: ${said}` : ''}`);
  }
  return tallyResult(tally);
}

// ---------------------------------------------------------------- restore: read blobs, authenticate, write in place
const packFds = new Map<string, number>();
let packBuf: Buffer | undefined;
/** Pack bytes read at once by restore and verify: a chunk larger than this is read alone. */
const RUN_BYTES = 4 * 1024 * 1024;

/** The worker's one buffer for pack bytes (runs of up to RUN_BYTES in restore and verify, a larger chunk alone),
 * grown in steps of 1 MiB when a read needs more: opening a chunk copies it out, and fresh memory for every read
 * cost the kernel a page fault per 4 KiB. The outgrown buffer is collected at once, not left to wait for a full
 * collection. */
function packBuffer(size: number): Buffer {
  if (!packBuf || packBuf.length < size) {
    const step = 1024 * 1024;
    packBuf = undefined;
    collectGarbage();
    packBuf = Buffer.allocUnsafeSlow(Math.ceil(size / step) * step);
    externalAfterFull = getHeapStatistics().external_memory;
  }
  return packBuf.subarray(0, size);
}

function packFd(packId: string, open = packFds): number {
  let fd = open.get(packId);
  if (fd !== undefined) {
    open.delete(packId);
    open.set(packId, fd);
    return fd;
  }
  if (open.size >= 16) {
    const [oldId, oldFd] = open.entries().next().value as [string, number];
    open.delete(oldId);
    fs.closeSync(oldFd);
  }
  try {
    fd = fs.openSync(storage.filePath('data', packId), 'r');
  } catch (err) {
    throw new ChunkIntegrityError('', packId, `its pack cannot be opened (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  open.set(packId, fd);
  return fd;
}

/** Restore writes the plaintext of adjacent chunks with one writev of up to this many bytes. On the Linux 6.18 VM
 * of 2026-12-02, 4 MiB writes cost the kernel twice the time of 1 MiB writes for the same bytes (a restore of the
 * bench data: 6.3 against 3.1 s of system time, 8.0 against 6.2 s wall, four runs each alternating; 512 KiB the
 * same as 1 MiB; `dd` with bs=4M against bs=1M: 1.1 against 0.6 s). It also holds less plaintext waiting. */
const PENDING_MAX = 1024 * 1024;

/** A stretch shorter than OUT_DIRECT_MIN goes through the page cache. */
const OUT_DIRECT_MIN = 64 * 1024;
/** undefined until tried; false where the platform, the memory or the file system refuses O_DIRECT. */
let outDirect: boolean | undefined = O_DIRECT === undefined ? false : undefined;

/** Page-aligned blocks for the restored bytes written past the page cache (decision 0029): one fills while the others
 * are being written. Made on first use. Each of a worker's two kinds of restore job has its own set (decision 0036),
 * so that one never waits for a block the other holds. */
class BlockSet {
  free: Buffer[] | undefined;
  /** Blocks being written. */
  inFlight = 0;
  private waiters: Array<() => void> = [];

  constructor(
    readonly size: number,
    private readonly count: number,
  ) {}

  /** Make the blocks (throws where WebAssembly memory is refused, ulimit -v). */
  make(): void {
    if (this.free) return;
    const memory = alignedMemory(this.count * this.size);
    this.free = [];
    for (let i = 0; i < this.count; i++) this.free.push(memory.subarray(i * this.size, (i + 1) * this.size));
  }

  /** A block's write ended: it is free again. */
  back(block: Buffer): void {
    this.free!.push(block);
    const w = this.waiters;
    this.waiters = [];
    for (const wake of w) wake();
  }

  /** Resolves once a block comes back. */
  changed(): Promise<void> {
    return new Promise<void>((resolve) => this.waiters.push(resolve));
  }
}
/** Chunks opened whole (compressed, or in groups): CPU-bound jobs, whose writes rarely queue. */
const openedBlocks = new BlockSet(1024 * 1024, 3);
/** Chunks stored as they are (photos), streamed from the pack to the file: their job waits for the disk. */
const streamedBlocks = new BlockSet(2 * 1024 * 1024, 3);

/** Where a restore job's bytes go. A contiguous stretch is copied into page-aligned blocks, and each full block is
 * written with O_DIRECT while the next fills: writing the 1.7 GB of a restore into fresh page-cache pages had kept
 * both workers in the kernel for most of it. The unaligned ends of a stretch, and short stretches (a database's
 * scattered pages), go through the page cache, gathered into positional writes, as does every file the restore
 * reads again at once (a database, for its integrity check). */
class RestoreOut {
  private direct: number | undefined;
  /** The block being filled, where it starts in the file, and how much of it is filled. */
  private block: Buffer | undefined;
  private at = 0;
  private fill = 0;
  private writing = 0;
  /** Bytes written past the page cache. */
  directBytes = 0;
  private failure: unknown;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private pendingAt = 0;

  constructor(
    readonly fd: number,
    file: string,
    length: number,
    private readonly blocks: BlockSet,
  ) {
    if (outDirect === false || length < OUT_DIRECT_MIN) return;
    try {
      blocks.make();
      this.direct = fs.openSync(file, fs.constants.O_WRONLY | O_DIRECT!);
      outDirect = true;
    } catch (err) {
      // WebAssembly memory refused (ulimit -v) or a file system without O_DIRECT: the page cache, as before.
      if (!(err instanceof Error && 'code' in err) || refusesDirect(err)) {
        outDirect = false;
      } else {
        fs.closeSync(fd);
        throw err;
      }
    }
  }

  /** Take plain bytes that belong at `at` in the file (copied or written before this returns). */
  put(plain: Buffer, at: number): void {
    if (this.direct === undefined) return this.buffered(plain, at);
    let off = 0;
    if (!this.block || at !== this.at + this.fill) {
      this.endBlock();
      // A block starts on a page boundary: the bytes before it go through the page cache.
      const head = Math.min(plain.length, (DIRECT_ALIGN - (at % DIRECT_ALIGN)) % DIRECT_ALIGN);
      if (head > 0) this.buffered(plain.subarray(0, head), at);
      off = head;
      if (off === plain.length) return;
      this.block = this.takeBlock();
      this.at = at + head;
    }
    while (off < plain.length) {
      const size = this.blocks.size;
      const n = Math.min(plain.length - off, size - this.fill);
      plain.copy(this.block!, this.fill, off, off + n);
      this.fill += n;
      off += n;
      if (this.fill === size) {
        this.writeDirect(size);
        this.at += size;
        this.block = off < plain.length ? this.takeBlock() : undefined;
      }
    }
  }

  /** A free block. There always is one: a block is sent to be written in the background only while another is free
   * (writeDirect), so at most all but one are under way. */
  private takeBlock(): Buffer {
    const free = this.blocks.free!.pop();
    if (free) return free;
    throw new Error('internal error: no free block for the restored bytes');
  }

  /** Write the first len bytes of the block at this.at, past the page cache; the block is free again once written. */
  private writeDirect(len: number): void {
    const block = this.block!;
    const at = this.at;
    this.block = undefined;
    this.fill = 0;
    const set = this.blocks;
    if (set.free!.length === 0) {
      // No other block to fill meanwhile: written here and now.
      try {
        this.writeAllSync(this.direct!, block, 0, len, at);
        this.directBytes += len;
      } catch (err) {
        if (!refusesDirect(err)) throw err;
        this.refused(block, 0, len, at);
      } finally {
        set.free!.push(block);
      }
      return;
    }
    this.writing++;
    set.inFlight++;
    const step = (done: number): void => {
      fs.write(this.direct!, block, done, len - done, at + done, (err, n) => {
        if (!err && done + n < len) return step(done + n);
        if (err && refusesDirect(err)) {
          try {
            this.refused(block, done, len, at);
            err = null;
          } catch (again) {
            err = again as NodeJS.ErrnoException;
          }
        }
        if (err) this.failure ??= err;
        else if (outDirect !== false) this.directBytes += len;
        this.writing--;
        set.inFlight--;
        set.back(block);
      });
    };
    step(0);
  }

  /** The file system took the O_DIRECT open but refuses its writes (EINVAL: some FUSE drivers): the rest of this
   * block, and every later file, go through the page cache. */
  private refused(block: Buffer, from: number, to: number, at: number): void {
    outDirect = false;
    this.writeAllSync(this.fd, block, from, to, at + from);
  }

  private writeAllSync(fd: number, buf: Buffer, from: number, to: number, at: number): void {
    let done = from;
    while (done < to) done += fs.writeSync(fd, buf, done, to - done, at + done - from);
  }

  /** Write the block being filled: its whole pages past the page cache (when there are enough), the rest through it. */
  private endBlock(): void {
    const block = this.block;
    if (!block) return;
    const fill = this.fill;
    const at = this.at;
    const whole = fill - (fill % DIRECT_ALIGN);
    if (whole >= OUT_DIRECT_MIN) {
      // The tail first: the block is not ours once its write is under way.
      this.writeAllSync(this.fd, block, whole, fill, at + whole);
      this.writeDirect(whole);
    } else {
      this.writeAllSync(this.fd, block, 0, fill, at);
      this.block = undefined;
      this.fill = 0;
      this.blocks.free!.push(block);
    }
  }

  /** Resolves once a block is free for the next bytes (at once, usually); rethrows a failed write. */
  async ready(): Promise<void> {
    const set = this.blocks;
    while (set.free && set.free.length === 0 && set.inFlight > 0) await set.changed();
    if (this.failure) throw this.failure;
  }

  private buffered(plain: Buffer, at: number): void {
    if (this.pending.length > 0 && (at !== this.pendingAt + this.pendingBytes || this.pendingBytes >= PENDING_MAX || this.pending.length >= 512)) this.flushPending();
    if (this.pending.length === 0) this.pendingAt = at;
    this.pending.push(plain);
    this.pendingBytes += plain.length;
  }

  private flushPending(): void {
    let at = this.pendingAt;
    let written = this.pending.length > 0 ? fs.writevSync(this.fd, this.pending, at) : 0;
    for (const b of this.pending) {
      // writev may write less than asked (very large or many pieces): the rest piece by piece.
      let off = Math.min(written, b.length);
      written -= off;
      while (off < b.length) off += fs.writeSync(this.fd, b, off, b.length - off, at + off);
      at += b.length;
    }
    this.pending = [];
    this.pendingBytes = 0;
  }

  /** Write what is left, or send it to be written. */
  flush(): void {
    this.endBlock();
    this.flushPending();
  }

  /** Wait for every write; rethrows the first that failed. */
  async finish(): Promise<void> {
    this.flush();
    await this.settle();
    if (this.failure) throw this.failure;
  }

  private async settle(): Promise<void> {
    while (this.writing > 0) await this.blocks.changed();
  }

  /** Close the file's descriptors, once no write is under way (also after a failure). */
  async close(): Promise<void> {
    if (this.block) {
      this.blocks.free!.push(this.block);
      this.block = undefined;
    }
    await this.settle();
    if (this.direct !== undefined) fs.closeSync(this.direct);
    fs.closeSync(this.fd);
  }
}

/** Write a stretch of a file. The chunks are read in the order they are stored, not the file's: a database's pages
 * come from groups written by many backups, and each group is then opened once, not once per page. The output is
 * written as contiguous pieces are complete, in positional writes. */
async function restoreJob(job: RestoreJob, streamed: boolean): Promise<JobValue> {
  const release = releaseCurrent;
  const n = job.packOf.length;
  const meta = job.meta;
  const dest = new Float64Array(n);
  let end = job.fileOffset;
  for (let i = 0; i < n; i++) {
    dest[i] = end;
    end += meta[i * REF_WIDTH + Ref.rawLength]!;
  }
  const offset = (i: number): number => meta[i * REF_WIDTH + Ref.offset]!;
  const order = new Uint32Array(n).map((_, i) => i);
  order.sort((x, y) => job.packOf[x]! - job.packOf[y]! || offset(x) - offset(y) || meta[x * REF_WIDTH + Ref.inner]! - meta[y * REF_WIDTH + Ref.inner]!);
  // A file written by this job alone is made here: the restore's thread then sends its job without waiting for the
  // file to be created first (creating a file costs the most of its calls; decision 0027).
  const fd = job.create ? fs.openSync(job.path, 'wx', 0o600) : fs.openSync(job.path, 'r+');
  const out = new RestoreOut(fd, job.path, job.cached ? 0 : end - job.fileOffset, streamed ? streamedBlocks : openedBlocks);
  try {
    const runs = runsOf(n, (k) => job.packOf[order[k]!], (k) => offset(order[k]!), (k) => meta[order[k]! * REF_WIDTH + Ref.length]!, streamed ? STREAM_RUN : RUN_BYTES);
    if (streamed) await writeStreamed(job, order, dest, runs, out);
    else await writeOpened(job, order, dest, runs, out);
    out.flush();
    // The rest is waiting for the last blocks' writes: the worker takes its next job meanwhile.
    release?.();
    await out.finish();
    if (job.create) {
      // After the last write, which would set the time again.
      fs.fchmodSync(out.fd, job.create.mode);
      const when = new Date(job.create.mtimeMs);
      fs.futimesSync(out.fd, when, when);
    }
  } finally {
    // Closed here even when created here: a worker thread closes the descriptors it opened when it ends, so one
    // handed to another thread could be closed again under a new owner.
    await out.close();
  }
  return { bytes: end - job.fileOffset, directBytes: out.directBytes } satisfies RestoreJobResult;
}

type Run = { start: number; end: number; from: number; to: number };

/** Chunks opened whole (compressed, or in groups), each run of them read at once into the worker's pack buffer. */
async function writeOpened(job: RestoreJob, order: Uint32Array, dest: Float64Array, runs: Run[], out: RestoreOut): Promise<void> {
  const opener = new BlobOpener(keys, init.boundIds);
  for (const run of runs) {
    const pack = job.packs[job.packOf[order[run.from]!]!]!;
    const buf = packBuffer(run.end - run.start);
    const fd = packFd(pack);
    let got = 0;
    while (got < buf.length) {
      const r = fs.readSync(fd, buf, got, buf.length - got, run.start + got);
      if (r === 0) throw new ChunkIntegrityError(blobRef(job, order[run.from]!).id.toString('hex'), pack, 'its pack is truncated');
      got += r;
    }
    for (let k = run.from; k < run.to; k++) {
      const i = order[k]!;
      const b = blobRef(job, i);
      const rel = b.offset - run.start;
      let at = dest[i]!;
      // A large uncompressed chunk (in a job that also has compressed ones) comes in pieces, written as they come:
      // into the partial file, which the restore removes if the chunk then fails to authenticate.
      opener.openTo(buf.subarray(rel, rel + b.length), b, pack, PENDING_MAX, (plain) => {
        out.put(plain, at);
        at += plain.length;
      });
      maybeCollect(opener.takeMade());
      await out.ready();
      if (performance.now() - lastYield > YIELD_MS) await yieldToStream();
    }
  }
}

/** Streamed jobs running in this worker (writeStreamed). */
let streaming = 0;
/** A job opening chunks gives the thread to a streamed job's finished reads and writes after at most this long: its
 * own awaits resolve at once (no I/O), and a streamed job's next read starts only when the last one was taken. */
const YIELD_MS = 1;
let lastYield = 0;
async function yieldToStream(): Promise<void> {
  await new Promise<void>((resolve) => setImmediate(resolve));
  lastYield = performance.now();
}

/** Pack bytes a streamed job reads at once, into one of two buffers: the next piece is being read while this one is
 * decrypted and written. */
const STREAM_PIECE = 1024 * 1024;
/** A streamed job's runs: how far one read-ahead goes in one pack (it holds no more memory for being longer). */
const STREAM_RUN = 64 * 1024 * 1024;
let streamBufs: [Buffer, Buffer] | undefined;
/** A streamed job's own open packs: its reads are under way while the worker's other job opens and closes others. */
const streamFds = new Map<string, number>();

function readInto(fd: number, buf: Buffer, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, 0, len, pos, (err, n) => (err ? reject(err) : resolve(n))));
}

/** Chunks stored as they are (photos): each run's bytes are read in pieces on libuv's threads while the piece before
 * is decrypted and copied into a write block, and the job waits for a free block without holding the thread. So the
 * worker's other job (a database's pages, a document) uses the CPU while this one waits for the disk (decision 0036).
 * Nothing larger than a piece is read or made at once, whatever the chunk's size. */
async function writeStreamed(job: RestoreJob, order: Uint32Array, dest: Float64Array, runs: Run[], out: RestoreOut): Promise<void> {
  const bufs = (streamBufs ??= [Buffer.allocUnsafeSlow(STREAM_PIECE), Buffer.allocUnsafeSlow(STREAM_PIECE)]);
  const meta = job.meta;
  streaming++;
  try {
    await streamRuns(job, order, dest, runs, out, bufs, meta);
  } finally {
    streaming--;
  }
}

async function streamRuns(job: RestoreJob, order: Uint32Array, dest: Float64Array, runs: Run[], out: RestoreOut, bufs: [Buffer, Buffer], meta: Uint32Array): Promise<void> {
  for (const run of runs) {
    const pack = job.packs[job.packOf[order[run.from]!]!]!;
    const fd = packFd(pack, streamFds);
    /** The chunk being opened: order[k], and the chunks after it in order that are the same chunk (a repeat in the
     * file), written at each of their places. */
    let k = run.from;
    let same = 1;
    let arriving: ArrivingBlob | undefined;
    let places: number[] = [];
    let chunkEnd = 0;
    let pos = run.start;
    let turn = 0;
    /** The read under way: into the buffer the next job would use, so a job that fails waits for it first. */
    let next: Promise<number> | undefined = readInto(fd, bufs[0], Math.min(STREAM_PIECE, run.end - pos), pos);
    try {
      while (pos < run.end) {
        const got = await next!;
        next = undefined;
        if (got === 0) throw new ChunkIntegrityError(blobRef(job, order[k]!).id.toString('hex'), pack, 'its pack is truncated');
        const buf = bufs[turn]!;
        const upto = pos + got;
        turn ^= 1;
        if (upto < run.end) next = readInto(fd, bufs[turn]!, Math.min(STREAM_PIECE, run.end - upto), upto);
        let p = pos;
        while (p < upto) {
          if (!arriving) {
            const i = order[k]!;
            const b = blobRef(job, i);
            arriving = new ArrivingBlob(keys, b, pack, init.boundIds);
            chunkEnd = b.offset + b.length;
            places = [dest[i]!];
            same = 1;
            while (k + same < run.to && meta[order[k + same]! * REF_WIDTH + Ref.offset] === b.offset) places.push(dest[order[k + same++]!]!);
          }
          const to = Math.min(upto, chunkEnd);
          const plain = arriving.take(buf.subarray(p - pos, to - pos));
          for (let j = 0; j < places.length && plain.length > 0; j++) {
            // Written at once, before the chunk is authenticated: into the partial file, which the restore removes if
            // the chunk then fails (ArrivingBlob.end).
            await out.ready();
            out.put(plain, places[j]!);
            places[j]! += plain.length;
          }
          p = to;
          if (p === chunkEnd) {
            arriving.end();
            arriving = undefined;
            k += same;
          }
        }
        pos = upto;
        maybeCollect(got);
      }
    } finally {
      if (next) await next.catch(() => 0);
    }
  }
}

// ---------------------------------------------------------------- verify: read a pack piece by piece, check everything
/** Read len bytes at pos into buf (from 0); returns how many there were (fewer at the end of the file). */
function readAt(fd: number, buf: Buffer, len: number, pos: number): number {
  let got = 0;
  while (got < len) {
    const n = fs.readSync(fd, buf, got, len - got, pos + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}

/** The SHA-256 of a whole file, read in pieces through the pack buffer. */
function hashFile(fd: number, size: number): string {
  const h = createHash('sha256');
  for (let pos = 0; pos < size; pos += RUN_BYTES) {
    const n = Math.min(RUN_BYTES, size - pos);
    const buf = packBuffer(n);
    const got = readAt(fd, buf, n, pos);
    h.update(buf.subarray(0, got));
    if (got < n) break;
  }
  return h.digest('hex');
}

/** Check one pack: every chunk the index places in it opens and has its id, the pack's own header opens, and the
 * pack's bytes carry its name. The chunks are read in runs of up to RUN_BYTES (a chunk larger than that alone), so a
 * worker holds a few MiB of a pack, not all of it; the header is read from the end. Reads are synchronous: the
 * worker has nothing else to do meanwhile. */
function verifyJob(job: VerifyJob): JobValue {
  const blobs = decodePackHeader(Buffer.from(job.blobs));
  const lost = (): JobValue => ({ bytes: 0, hashOk: false, headerOk: false, bad: blobs.map((b) => b.id.toString('hex')), chunks: blobs.length });
  let fd: number;
  try {
    fd = fs.openSync(storage.filePath('data', job.packId), 'r');
  } catch {
    // Unreadable (I/O error, removed meanwhile): every chunk in it is lost.
    return lost();
  }
  try {
    const { size } = fs.fstatSync(fd);
    const bad: string[] = [];
    const opener = new BlobOpener(keys, init.boundIds);
    const list = blobs.map((blob) => ({ pack: job.packId, blob }));
    list.sort((x, y) => x.blob.offset - y.blob.offset || (x.blob.inner ?? 0) - (y.blob.inner ?? 0));
    for (const run of blobRuns(list, RUN_BYTES)) {
      const want = Math.max(0, Math.min(run.end, size) - run.start);
      const buf = packBuffer(want);
      const got = want > 0 ? readAt(fd, buf, want, run.start) : 0;
      for (let k = run.from; k < run.to; k++) {
        const b = list[k]!.blob;
        const rel = b.offset - run.start;
        try {
          // A chunk past the end of a truncated pack gets fewer bytes than it needs and fails to authenticate.
          opener.check(buf.subarray(rel, Math.min(rel + b.length, got)), b, job.packId);
          maybeCollect(opener.takeMade());
        } catch (err) {
          if (!(err instanceof ChunkIntegrityError)) throw err;
          bad.push(b.id.toString('hex'));
        }
      }
    }
    // The tail: the sealed header and its length. A format-2 pack is named by the SHA-256 of it; a format-1 pack
    // (or a damaged one) by that of the whole file, read again.
    let own: PackBlob[] | undefined;
    let tail: Buffer | undefined;
    if (size >= 4) {
      const last = Buffer.alloc(4);
      readAt(fd, last, 4, size - 4);
      const hlen = last.readUInt32LE(0);
      if (hlen + 4 <= size) {
        tail = Buffer.alloc(hlen + 4);
        tail = tail.subarray(0, readAt(fd, tail, hlen + 4, size - 4 - hlen));
        try {
          own = parsePack(keys, tail, job.packId);
        } catch {
          own = undefined;
        }
      }
    }
    const headerOk = own !== undefined;
    const hashOk = (tail !== undefined && packTailMatches(tail, size, job.packId, own)) || hashFile(fd, size) === job.packId;
    // What the last pieces left behind, young: a minor collection frees it for ~1 ms.
    collectGarbage('minor');
    return { bytes: size, hashOk, headerOk, bad, chunks: blobs.length };
  } catch (err) {
    // An I/O error part-way (the drive went away): nothing in the pack can be vouched for.
    if (err instanceof Error && 'code' in err) return lost();
    throw err;
  } finally {
    fs.closeSync(fd);
  }
}

/** SQLite's module (better-sqlite3 and its native addon), loaded by the first job that needs it: most workers never
 * do (verify's, and a backup's whose database copy and check were made before the workers started), and loading it
 * took ~20-30 ms of each worker's start. */
let sqliteModule: Promise<typeof import('../sources/sqlite.js')> | undefined;
function sqliteSource(): Promise<typeof import('../sources/sqlite.js')> {
  return (sqliteModule ??= import('../sources/sqlite.js'));
}

async function run(job: WorkerJob, streamed: boolean): Promise<JobValue> {
  switch (job.kind) {
    case 'chunk':
      return chunkJob(job);
    case 'command':
      return commandJob(job);
    case 'flush':
      // Members gathered by a job that failed part-way are already marked as known: they are stored now.
      if (groupBuf) await storeGroup(groupBuf);
      await writer.finish();
      return {};
    case 'restore':
      return restoreJob(job, streamed);
    case 'verify':
      return verifyJob(job);
    case 'sqlite-copy':
      return (await sqliteSource()).copySqliteTo(job.source, job.path);
    case 'sqlite-check':
      return (await sqliteSource()).checkDatabaseFile(job.path, job.quick);
  }
}

/** Jobs run one at a time, in the order they came. A job may let the next one start before it ends (release): a restore
 * job whose last writes are under way (decision 0029). Streamed restore jobs (isStreamed) have a queue of their own:
 * one of them runs beside the other jobs, since it spends most of its time waiting for the disk (decision 0036). */
let queue: Promise<void> = Promise.resolve();
let streamQueue: Promise<void> = Promise.resolve();
/** Set while a job starts: what lets the next job start. A job that may end after the next has started takes it at
 * once. */
let releaseCurrent: (() => void) | undefined;
port.on('message', (msg: JobMessage) => {
  let turnOver!: () => void;
  const turn = new Promise<void>((resolve) => (turnOver = resolve));
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    port.postMessage({ type: 'released', jobId: msg.jobId } satisfies WorkerEvent);
    turnOver();
  };
  const streamed = msg.streamed;
  void (streamed ? streamQueue : queue).then(async () => {
    let reply: JobReply;
    releaseCurrent = release;
    try {
      reply = { type: 'result', jobId: msg.jobId, ok: true, value: await run(msg.job, streamed) };
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      reply = {
        type: 'result',
        jobId: msg.jobId,
        ok: false,
        error: { message: e.message, code: e.code, source: err instanceof SourceError, integrity: err instanceof ChunkIntegrityError },
      };
    }
    released = true;
    port.postMessage(reply);
    turnOver();
  });
  if (streamed) streamQueue = turn;
  else queue = turn;
});

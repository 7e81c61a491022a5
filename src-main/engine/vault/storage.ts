// Storage: the vault's files on a local folder (external drive, NAS mount, local disk). Every write goes to a
// temporary name, is fsynced, renamed into place and its folder fsynced, so a file appears whole or not at all.
import { constants as fsc, readSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { alignedMemory, DIRECT_ALIGN, O_DIRECT, refusesDirect } from './direct-io.js';

export type FileKind = 'config' | 'keys' | 'data' | 'index' | 'snapshots' | 'locks' | 'obsolete';
export const KINDS: readonly FileKind[] = ['keys', 'data', 'index', 'snapshots', 'locks', 'obsolete'];
export const TMP_PREFIX = '.tmp-';

/** What the vault layers need from a place that stores files; implemented by LocalStorage and test doubles. */
export interface Storage {
  readonly location: string;
  /** data may be given in parts, written in order without being joined first. */
  write(kind: FileKind, name: string, data: Uint8Array | readonly Uint8Array[]): Promise<void>;
  read(kind: FileKind, name: string): Promise<Buffer>;
  readAt(kind: FileKind, name: string, offset: number, length: number): Promise<Buffer>;
  size(kind: FileKind, name: string): Promise<number>;
  /** Read a file through `scratch` and drop what was read, so that its reader soon after finds it in the page cache
   * (readahead for a reader on another thread). Never throws: the reader meets any error itself. */
  readAhead(kind: FileKind, name: string, scratch: Buffer): Promise<void>;
  list(kind: FileKind): Promise<string[]>;
  remove(kind: FileKind, name: string): Promise<void>;
  exists(kind: FileKind, name: string): Promise<boolean>;
}

async function fsyncDir(dir: string): Promise<void> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(dir, fsc.O_RDONLY);
    await fh.sync();
  } catch (err) {
    // Windows cannot open a directory for fsync; NTFS journals the rename itself.
    if (process.platform !== 'win32') throw err;
  } finally {
    await fh?.close();
  }
}

/** A folder and any missing parents, like `mkdir -p`, for a path the user gave (a restore's target, a new vault).
 * Node's `fs.mkdir(dir, { recursive: true })` retries for ever when a folder's parent exists but the folder cannot
 * be made and the system answers ENOENT (under /proc, for one: the restore spun at full CPU). Here each missing
 * folder is made once, after its parent, and such an error is thrown. */
export async function makeFolderPath(dir: string): Promise<void> {
  const missing: string[] = [];
  let cur = path.resolve(dir);
  for (;;) {
    try {
      if ((await fsp.stat(cur)).isDirectory()) break;
      throw Object.assign(new Error(`ENOTDIR: not a directory, mkdir '${cur}'`), { code: 'ENOTDIR', path: cur });
    } catch (err) {
      const parent = path.dirname(cur);
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || parent === cur) throw err;
      missing.push(cur);
      cur = parent;
    }
  }
  for (const folder of missing.reverse()) {
    await fsp.mkdir(folder).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
  }
}

/** Write data to file via temp + fsync + rename + dir fsync. Without `durable`, no fsync: the file still appears
 * whole or not at all to other processes, but may be lost (or left empty) by a power cut. `data` may be pieces made
 * as they are taken (sealPiecewise): they are drawn a few at a time, so only those are held at once. */
export async function writeFileAtomic(file: string, data: Uint8Array | Iterable<Uint8Array>, opts: { exclusive?: boolean; durable?: boolean } = {}): Promise<void> {
  const durable = opts.durable ?? true;
  const dir = path.dirname(file);
  const tmp = path.join(dir, `${TMP_PREFIX}${randomBytes(8).toString('hex')}`);
  const fh = await fsp.open(tmp, 'wx', 0o600);
  try {
    try {
      await writeAll(fh, data instanceof Uint8Array ? [data] : data);
      if (durable) await fh.sync();
    } finally {
      await fh.close();
    }
    if (opts.exclusive) {
      // link() fails if the target exists: no silent replacement of a file that must never change.
      await linkOrRename(tmp, file);
    } else {
      await fsp.rename(tmp, file);
    }
    if (durable) await fsyncDir(dir);
  } catch (err) {
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
}

/** Write the parts one after the other, at the file's current position or from `position`. */
async function writeAll(fh: fsp.FileHandle, parts: Iterable<Uint8Array>, position?: number): Promise<void> {
  // writev in groups of at most 512 parts (IOV_MAX is 1024 on Linux) or about GROUP_BYTES, taken from `parts` as
  // they are written; a short write continues from where it stopped.
  let at = position;
  const next = parts[Symbol.iterator]();
  for (let done = false; !done; ) {
    let group: Uint8Array[] = [];
    let bytes = 0;
    while (group.length < 512 && bytes < GROUP_BYTES) {
      const r = next.next();
      if (r.done) {
        done = true;
        break;
      }
      if (r.value.length > 0) group.push(r.value);
      bytes += r.value.length;
    }
    while (group.length > 0) {
      let { bytesWritten } = await fh.writev(group, at);
      if (bytesWritten === 0) throw new Error('the disk accepted no bytes');
      if (at !== undefined) at += bytesWritten;
      while (group.length > 0 && bytesWritten >= group[0]!.length) {
        bytesWritten -= group[0]!.length;
        group = group.slice(1);
      }
      if (group.length > 0 && bytesWritten > 0) group[0] = group[0]!.subarray(bytesWritten);
    }
  }
}

/** About this many bytes are drawn from a writer's parts for each writev. */
const GROUP_BYTES = 1024 * 1024;

async function linkOrRename(tmp: string, file: string): Promise<void> {
  try {
    await fsp.link(tmp, file);
    await fsp.unlink(tmp);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw err;
    // FAT/exFAT drives have no hard links: fall back to check-then-rename (we hold the vault lock).
    const exists = await fsp.access(file).then(() => true, () => false);
    if (exists) throw Object.assign(new Error(`${file} exists`), { code: 'EEXIST' });
    await fsp.rename(tmp, file);
  }
}

/** Put a complete, fsynced temporary file in place as `file`, never replacing an existing one (fails with EEXIST),
 * and make the new name durable (the folder is fsynced). */
export async function publishFile(tmp: string, file: string): Promise<void> {
  await linkOrRename(tmp, file);
  await fsyncDir(path.dirname(file));
}

/** Bytes per write of a pack being made (TempFile). */
const BLOCK = 1024 * 1024;

/** The blocks one writer stages its bytes in (a few, each BLOCK long, reused): a block is lent to a file while it
 * fills and is written, and comes back when its write is done. Whether the vault's file system takes O_DIRECT is
 * learnt once, on the first file. */
export class WriteBlocks {
  private readonly free: Buffer[] = [];
  private readonly waiting: Array<(b: Buffer) => void> = [];
  /** undefined until tried; false where the platform or the file system refuses it. */
  direct: boolean | undefined = O_DIRECT === undefined ? false : undefined;

  constructor(count: number) {
    let memory: Buffer;
    try {
      memory = alignedMemory(count * BLOCK);
    } catch {
      // WebAssembly memory refused (address space limited by ulimit -v, WebAssembly disabled): ordinary memory,
      // written through the page cache.
      memory = Buffer.allocUnsafeSlow(count * BLOCK);
      this.direct = false;
    }
    for (let i = 0; i < count; i++) this.free.push(memory.subarray(i * BLOCK, (i + 1) * BLOCK));
  }

  take(): Buffer | Promise<Buffer> {
    return this.free.pop() ?? new Promise((resolve) => this.waiting.push(resolve));
  }

  give(block: Buffer): void {
    const w = this.waiting.shift();
    if (w) w(block);
    else this.free.push(block);
  }
}

/** A file written from start to end under a temporary name; commit() makes it durable under its final name.
 * Bytes are copied into blocks of BLOCK bytes as they come (the caller's buffers are free at once) and each full
 * block is written while the next fills. Full blocks bypass the page cache (direct-io.ts): copying 1.5 GB of packs
 * through it cost this machine's kernel 2-8 CPU-seconds per first backup (decision 0019). The last,
 * partial block goes through the page cache. */
export class TempFile {
  private block: Buffer | undefined;
  private used = 0;
  /** Where the block being filled starts in the file. */
  private at = 0;
  private readonly writes = new Set<Promise<void>>();
  private failure: unknown;

  private constructor(
    readonly path: string,
    private readonly fh: fsp.FileHandle,
    private direct: fsp.FileHandle | undefined,
    private readonly blocks: WriteBlocks,
    private readonly dest: (name: string) => string,
  ) {}

  static async create(dir: string, dest: (name: string) => string, blocks: WriteBlocks): Promise<TempFile> {
    await fsp.mkdir(dir, { recursive: true });
    const p = path.join(dir, `${TMP_PREFIX}${randomBytes(8).toString('hex')}`);
    const fh = await fsp.open(p, 'wx', 0o600);
    let direct: fsp.FileHandle | undefined;
    if (blocks.direct !== false) {
      try {
        direct = await fsp.open(p, fsc.O_WRONLY | O_DIRECT!);
        blocks.direct = true;
      } catch (err) {
        // A file system without O_DIRECT (some FUSE drivers). Anything else is a real failure.
        if (!refusesDirect(err)) {
          await fh.close();
          await fsp.rm(p, { force: true });
          throw err;
        }
        blocks.direct = false;
      }
    }
    return new TempFile(p, fh, direct, blocks, dest);
  }

  /** Append the pieces, taken one after the other (each copied before the next is taken, all before this resolves).
   * Rethrows an earlier write's failure. */
  async append(parts: Iterable<Uint8Array>): Promise<void> {
    if (this.failure) throw this.failure;
    for (const part of parts) {
      let off = 0;
      while (off < part.length) {
        if (!this.block) {
          this.block = await this.blocks.take();
          this.used = 0;
        }
        const n = Math.min(part.length - off, BLOCK - this.used);
        this.block.set(n === part.length ? part : part.subarray(off, off + n), this.used);
        this.used += n;
        off += n;
        if (this.used === BLOCK) this.writeBlock();
      }
    }
  }

  /** Start writing the block being filled; it goes back to the pool when written. */
  private writeBlock(): void {
    const block = this.block!;
    const length = this.used;
    const at = this.at;
    this.block = undefined;
    this.used = 0;
    this.at += length;
    const w: Promise<void> = this.writeOut(block.subarray(0, length), at).then(
      () => undefined,
      (err: unknown) => {
        this.failure ??= err;
      },
    ).finally(() => {
      this.blocks.give(block);
      this.writes.delete(w);
    });
    this.writes.add(w);
  }

  private async writeOut(data: Buffer, at: number): Promise<void> {
    if (this.direct && data.length % DIRECT_ALIGN === 0 && at % DIRECT_ALIGN === 0) {
      try {
        await writeAll(this.direct, [data], at);
        return;
      } catch (err) {
        // A file system that opens with O_DIRECT but refuses the write: write this and every later block buffered.
        if (!refusesDirect(err)) throw err;
        this.blocks.direct = false;
        const d = this.direct;
        this.direct = undefined;
        await d.close().catch(() => undefined);
      }
    }
    await writeAll(this.fh, [data], at);
  }

  /** Write what is left, fsync, close, link into place as `name` (never replacing an existing file), fsync the
   * folder. */
  async commit(name: string): Promise<void> {
    try {
      if (this.used > 0) this.writeBlock();
      else if (this.block) {
        this.blocks.give(this.block);
        this.block = undefined;
      }
      while (this.writes.size > 0) await Promise.all(this.writes);
      if (this.failure) throw this.failure;
      await this.fh.sync();
    } finally {
      try {
        await this.direct?.close();
      } finally {
        await this.fh.close();
      }
    }
    const file = this.dest(name);
    await fsp.mkdir(path.dirname(file), { recursive: true });
    try {
      await publishFile(this.path, file);
    } catch (err) {
      await fsp.rm(this.path, { force: true });
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }

  async abort(): Promise<void> {
    while (this.writes.size > 0) await Promise.all(this.writes);
    if (this.block) {
      this.blocks.give(this.block);
      this.block = undefined;
    }
    await this.direct?.close().catch(() => undefined);
    await this.fh.close().catch(() => undefined);
    await fsp.rm(this.path, { force: true });
  }
}

/** A 4 KiB read faster than this came from the page cache (a few microseconds there; ~0.1-1 ms from a disk). */
const CACHED_READ_MS = 0.05;

export class LocalStorage implements Storage {
  constructor(readonly location: string) {}

  filePath(kind: FileKind, name: string): string {
    if (kind === 'config') return path.join(this.location, 'config.json');
    if (kind === 'data') return path.join(this.location, 'data', name.slice(0, 2), name);
    return path.join(this.location, kind, name);
  }

  async write(kind: FileKind, name: string, data: Uint8Array | readonly Uint8Array[]): Promise<void> {
    const file = this.filePath(kind, name);
    if (kind !== 'config') await fsp.mkdir(path.dirname(file), { recursive: true });
    // Content-addressed files are never replaced: same name means same bytes. A lock need not survive a power cut
    // (a lost or empty lock file is no lock, and an unreadable one is cleared as stale), and its fsync waited for
    // the journal to take the database copy just written beside the vault: 0.2 s of every backup on one disk.
    await writeFileAtomic(file, data, { exclusive: kind !== 'config' && kind !== 'locks' && kind !== 'obsolete', durable: kind !== 'locks' }).catch((err) => {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return;
      throw err;
    });
  }

  /** A temporary file in the kind's folder, to be committed under its content name once complete. */
  createTemp(kind: FileKind, blocks: WriteBlocks): Promise<TempFile> {
    return TempFile.create(path.join(this.location, kind), (name) => this.filePath(kind, name), blocks);
  }

  read(kind: FileKind, name: string): Promise<Buffer> {
    return fsp.readFile(this.filePath(kind, name));
  }

  async readAt(kind: FileKind, name: string, offset: number, length: number): Promise<Buffer> {
    const fh = await fsp.open(this.filePath(kind, name), 'r');
    try {
      const buf = Buffer.allocUnsafe(length);
      let got = 0;
      while (got < length) {
        const { bytesRead } = await fh.read(buf, got, length - got, offset + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      return got === length ? buf : buf.subarray(0, got);
    } finally {
      await fh.close();
    }
  }

  async readAhead(kind: FileKind, name: string, scratch: Buffer): Promise<void> {
    try {
      const fh = await fsp.open(this.filePath(kind, name), 'r');
      try {
        // A page from its middle first: from memory it takes microseconds, and the file is left alone (read whole
        // when it was cached, it cost verify ~0.4 s); from the disk, a fraction of a millisecond.
        const { size } = await fh.stat();
        const t = performance.now();
        readSync(fh.fd, scratch, 0, Math.min(4096, scratch.length), Math.floor(size / 8192) * 4096);
        if (performance.now() - t < CACHED_READ_MS) return;
        for (let pos = 0; ; pos += scratch.length) if ((await fh.read(scratch, 0, scratch.length, pos)).bytesRead < scratch.length) break;
      } finally {
        await fh.close();
      }
    } catch {
      // Left to the reader.
    }
  }

  async size(kind: FileKind, name: string): Promise<number> {
    return (await fsp.stat(this.filePath(kind, name))).size;
  }

  /** Last modification time in ms since the epoch. */
  async modified(kind: FileKind, name: string): Promise<number> {
    return (await fsp.stat(this.filePath(kind, name))).mtimeMs;
  }

  async list(kind: FileKind): Promise<string[]> {
    const dir = path.join(this.location, kind);
    if (kind === 'data') {
      const out: string[] = [];
      for (const sub of await readdirOrEmpty(dir)) {
        if (!/^[0-9a-f]{2}$/.test(sub)) continue;
        for (const f of await readdirOrEmpty(path.join(dir, sub))) if (!f.startsWith(TMP_PREFIX)) out.push(f);
      }
      return out.sort();
    }
    return (await readdirOrEmpty(dir)).filter((f) => !f.startsWith(TMP_PREFIX)).sort();
  }

  async remove(kind: FileKind, name: string): Promise<void> {
    await fsp.rm(this.filePath(kind, name), { force: true });
  }

  async exists(kind: FileKind, name: string): Promise<boolean> {
    try {
      await fsp.access(this.filePath(kind, name));
      return true;
    } catch {
      return false;
    }
  }

  /** Remove temp files left by a process that died mid-write. Call only while holding the exclusive lock. */
  async removeLeftoverTemps(): Promise<number> {
    let removed = 0;
    const dirs = [this.location, ...KINDS.map((k) => path.join(this.location, k))];
    for (const sub of await readdirOrEmpty(path.join(this.location, 'data'))) dirs.push(path.join(this.location, 'data', sub));
    for (const dir of dirs) {
      for (const f of await readdirOrEmpty(dir)) {
        if (f.startsWith(TMP_PREFIX)) {
          await fsp.rm(path.join(dir, f), { force: true });
          removed++;
        }
      }
    }
    return removed;
  }

  /** Free and total bytes of the filesystem holding the vault, or undefined when the platform cannot tell. */
  async diskSpace(): Promise<{ free: number; total: number } | undefined> {
    try {
      const s = await fsp.statfs(this.location);
      return { free: s.bavail * s.bsize, total: s.blocks * s.bsize };
    } catch {
      return undefined;
    }
  }
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await fsp.readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

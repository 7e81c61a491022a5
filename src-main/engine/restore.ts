// Restore: a snapshot (or some paths of it) into a target folder. The whole plan is checked before anything is
// written: no path may escape the target, no existing file is overwritten unless asked, and no symlink in the
// target is followed. Every chunk is authenticated; a restored database is re-checked against the snapshot.
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { EnginePool, JobFailed } from './pipeline/pool.js';
import { collectGarbage } from './pipeline/young-generation.js';
import type { RestoreJob, RestoreJobResult, SqliteCheckResult } from './pipeline/protocol.js';
import { ChunkIntegrityError } from './vault/pack.js';
import { RefusedError, UsageError, isNoSpace, DriveFullError, cannotMakeFolder } from './errors.js';
import { makeFolderPath } from './vault/storage.js';
import { contentIds, type Snapshot, type TreeEntry } from './vault/snapshot.js';
import type { Vault } from './vault/vault.js';
import type { MasterIndex } from './vault/index-file.js';

export interface RestoreProgress {
  filesDone: number;
  filesTotal: number;
  bytesDone: number;
  bytesTotal: number;
}

export interface RestoreOptions {
  target: string;
  include?: string[];
  overwrite?: boolean;
  index?: MasterIndex;
  /** Check restored SQLite databases with the full PRAGMA integrity_check (test restores, exports). A restore runs
   * quick_check: every page was authenticated against the backup, whose copy passed quick_check when it was made,
   * and the full check (indexes compared with their tables) takes 1.1 s instead of 0.34 s on 200 MB (decision 0013). */
  fullIntegrityCheck?: boolean;
  onProgress?: (p: RestoreProgress) => void;
  signal?: AbortSignal;
}

export interface DatabaseCheck {
  label: string;
  path: string;
  integrityCheck: string;
  /** 'quick' (PRAGMA quick_check) or 'full' (PRAGMA integrity_check). */
  checked: 'quick' | 'full';
  expected: Record<string, number>;
  actual: Record<string, number>;
  ok: boolean;
}

export interface RestoreResult {
  target: string;
  files: number;
  bytes: number;
  failed: Array<{ path: string; reason: string }>;
  databases: DatabaseCheck[];
  /** Of bytes, how many were written past the page cache (decision 0029). */
  directBytes: number;
}

/** Large files are restored in segments of about this much, by several workers at once; a file of at most one
 * segment is created and written whole by one worker (decision 0027). The same as a backup's
 * database segment (backup.ts): a group holds pages of one such segment only, so one restore job opens each group,
 * however the pages changed (measured: 840 groups opened for 851 stored, after three days of updates to random rows;
 * assigning pages to jobs by their group instead of by file position changed nothing). */
const SEGMENT = 32 * 1024 * 1024;
/** Files whose contents are being written at once (their segments share the workers). */
const FILES_IN_FLIGHT = 8;
/** Written files waiting to be made durable and put in place; they hold no memory, only a file handle each. */
const FILES_FINISHING = 64;
/** fsyncs at once. Node runs them, and every other file call of this thread, on libuv's four threads: with all four
 * in fsync (a 200 MB database takes ~0.2 s), opening the next file waited and both cores stood idle. */
const SYNCS_AT_ONCE = 2;

/** At most `max` of the calls to run() at once; the others wait their turn. */
class Gate {
  private active = 0;
  private readonly waiting: Array<() => void> = [];
  constructor(private readonly max: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active++;
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}

interface PlannedItem {
  display: string;
  segments: string[];
  entry: TreeEntry;
  sqliteSource?: { label: string; tables: Record<string, number> };
}

/** Split a stored path into safe segments, or say why it is unsafe. */
export function safeSegments(p: string): string[] | string {
  if (typeof p !== 'string' || p.length === 0) return 'empty path';
  if (p.includes('\0')) return 'contains a NUL byte';
  if (p.includes('\\')) return 'contains a backslash';
  if (p.startsWith('/') || /^[A-Za-z]:/.test(p)) return 'is an absolute path';
  const segs = p.split('/');
  for (const s of segs) {
    if (s === '' || s === '.' || s === '..') return `has a "${s || '(empty)'}" component`;
    if (/[<>:"|?*]/.test(s) && process.platform === 'win32') return 'has characters Windows does not allow';
  }
  return segs;
}

export function normalizeInclude(p: string): string {
  return p.replace(/\\/g, '/').replace(/^\.\/+/, '').replace(/\/+$/, '');
}

export function planRestore(snapshot: Snapshot, include: string[] = []): PlannedItem[] {
  const items: PlannedItem[] = [];
  const problems: string[] = [];
  const labels = new Set<string>();
  for (const src of snapshot.sources) {
    const label = safeSegments(src.label);
    if (typeof label === 'string' || label.length !== 1) {
      problems.push(`source label "${src.label}" ${typeof label === 'string' ? label : 'has several components'}`);
      continue;
    }
    if (labels.has(src.label)) problems.push(`two sources are both named "${src.label}"`);
    labels.add(src.label);
    for (const e of src.entries) {
      if (e.type !== 'file' && e.type !== 'dir') {
        problems.push(`"${e.path}" has type "${String(e.type)}"; only files and folders are restored`);
        continue;
      }
      if (src.kind === 'sqlite') {
        if (e.path !== src.label || e.type !== 'file') problems.push(`database entry "${e.path}" does not match its source`);
        else items.push({ display: src.label, segments: [src.label], entry: e, sqliteSource: { label: src.label, tables: src.tables } });
        continue;
      }
      const segs = safeSegments(e.path);
      if (typeof segs === 'string') problems.push(`"${e.path}" ${segs}`);
      else items.push({ display: `${src.label}/${e.path}`, segments: [src.label, ...segs], entry: e });
    }
  }
  if (problems.length > 0) {
    throw new RefusedError(
      `This snapshot contains paths that would be written outside the restore folder or are otherwise unsafe, so nothing was restored: ${problems.slice(0, 5).join('; ')}` +
        (problems.length > 5 ? `; and ${problems.length - 5} more` : '') + '. The vault may have been tampered with.',
    );
  }
  if (include.length === 0) return items;
  const wanted = include.map(normalizeInclude);
  // An included path brings everything below it, and the folders above it (so their times are restored too).
  const out = items.filter((it) =>
    wanted.some((w) => it.display === w || it.display.startsWith(w + '/') || (it.entry.type === 'dir' && w.startsWith(it.display + '/'))),
  );
  for (const w of wanted) {
    if (!items.some((it) => it.display === w || it.display.startsWith(w + '/'))) {
      throw new UsageError(`Nothing in this snapshot matches "${w}". Paths start with the source name, e.g. "${items[0]?.display ?? 'media/...'}".`);
    }
  }
  return out;
}

/** Make one folder of the restore without following a symlink in its place. Made here, it is a folder of this
 * restore's own; only one that was there already is looked at (mkdir does not follow a link that stands in its
 * place: it fails with EEXIST). */
async function makeDir(dir: string): Promise<string> {
  const made = await fsp.mkdir(dir).then(
    () => true,
    (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EEXIST') throw e;
      return false;
    },
  );
  if (made) return dir;
  const st = await fsp.lstat(dir);
  if (st.isSymbolicLink()) throw new RefusedError(`${dir} is a symbolic link; restore does not write through links. Choose an empty target folder.`);
  if (!st.isDirectory()) throw new RefusedError(`${dir} exists and is not a folder, so nothing can be restored below it.`);
  return dir;
}

/** The restore's folders (mkdir -p below the target), each made or checked once, after its parent, and not looked at
 * again (another program swapping a folder for a link while the restore runs was never kept out: a check and the
 * write after it are separate calls). They are all asked for before the first file is written and made meanwhile;
 * a file waits only for its own folder. Made one at a time as the files came, every new folder
 * (559 for the bench's 1,197 files) had held up the next file's job: the workers stood idle ~0.2-0.5 s each
 * (decision 0027). */
class Folders {
  private readonly made = new Map<string, Promise<string>>();
  constructor(private readonly root: string) {}

  /** The folder root/segments..., once it and its parents are made. */
  ensure(segments: string[]): Promise<string> {
    let ready: Promise<string> = Promise.resolve(this.root);
    let cur = this.root;
    for (const s of segments) {
      cur = path.join(cur, s);
      let next = this.made.get(cur);
      if (!next) {
        const dir = cur;
        next = ready.then(() => makeDir(dir));
        // Its error is reported by whoever waits for it, and by all().
        next.catch(() => undefined);
        this.made.set(dir, next);
      }
      ready = next;
    }
    return ready;
  }

  /** Every folder asked for; rejects with the first error. */
  all(): Promise<unknown> {
    return Promise.all(this.made.values());
  }
}

/** A restored file's calls on its descriptor, with the callback API: a FileHandle's promises cost this thread more
 * per call, and it makes several per file. */
function fdCall<T>(fn: (done: (err: NodeJS.ErrnoException | null, value?: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => fn((err, value) => (err ? reject(err) : resolve(value as T))));
}
const openFd = (file: string, flags: string, mode: number): Promise<number> => fdCall<number>((done) => fs.open(file, flags, mode, done));
const fsyncFd = (fd: number): Promise<void> => fdCall<void>((done) => fs.fsync(fd, done));
const fdatasyncFd = (fd: number): Promise<void> => fdCall<void>((done) => fs.fdatasync(fd, done));
const fchmodFd = (fd: number, mode: number): Promise<void> => fdCall<void>((done) => fs.fchmod(fd, mode, done));
const futimesFd = (fd: number, when: Date): Promise<void> => fdCall<void>((done) => fs.futimes(fd, when, when, done));
const closeFd = (fd: number): Promise<void> => fdCall<void>((done) => fs.close(fd, done));

export async function restore(vault: Vault, snapshot: Snapshot, opts: RestoreOptions): Promise<RestoreResult> {
  // The workers boot first (~0.1 s of CPU each): they start while this thread plans, checks the target and loads the
  // index, instead of after it.
  const pool = new EnginePool(vault.location, vault.keys, vault.config);
  try {
    return await restoreWith(vault, snapshot, opts, pool);
  } finally {
    await pool.close();
  }
}

async function restoreWith(vault: Vault, snapshot: Snapshot, opts: RestoreOptions, pool: EnginePool): Promise<RestoreResult> {
  const plan = planRestore(snapshot, opts.include);
  await makeFolderPath(opts.target).catch((err: unknown) => {
    throw cannotMakeFolder('restore folder', path.resolve(opts.target), err);
  });
  const target = await fsp.realpath(opts.target);
  const files = plan.filter((p) => p.entry.type === 'file');

  // Files that would be overwritten are refused before anything is written (into an empty folder, none can be:
  // each file is checked once more just before it is put in place).
  if (!opts.overwrite && (await fsp.readdir(target)).length > 0) {
    const existing: string[] = [];
    for (const it of files) {
      const p = path.join(target, ...it.segments);
      if (await fsp.lstat(p).then(() => true, () => false)) existing.push(p);
    }
    if (existing.length > 0) {
      throw new RefusedError(
        `Restore would overwrite ${existing.length} existing file(s), for example ${existing.slice(0, 3).join(', ')}. Nothing was changed. ` +
          'Restore into an empty folder, or ask explicitly to overwrite.',
      );
    }
  }

  opts.signal?.addEventListener('abort', () => void pool.close(), { once: true });
  const index = opts.index ?? (await vault.loadIndex());
  // The index files and the snapshot just read are garbage now; collected before the workers fill up, the restore
  // peaked at 207-251 MB (mean 222, eleven runs) against 219-268 (mean 236, eleven runs, alternating), with a
  // full collection; from commit b326b3e to decision 0021 this call made only a young one (Node 20's
  // gc({ type: 'major' }) is one).
  collectGarbage();
  const progress: RestoreProgress = { filesDone: 0, filesTotal: files.length, bytesDone: 0, bytesTotal: files.reduce((a, f) => a + f.entry.size, 0) };
  const result: RestoreResult = { target, files: 0, bytes: 0, failed: [], databases: [], directBytes: 0 };
  let lastEmit = 0;
  const emit = (force = false): void => {
    const t = performance.now();
    if (force || t - lastEmit > 100) {
      lastEmit = t;
      opts.onProgress?.({ ...progress });
    }
  };
  const fatal: { err?: unknown } = {};

  // Each file's chunks as index entries (-1: in no pack), and the order its jobs go in.
  const located = new Map<PlannedItem, Int32Array>();
  for (const it of files) {
    const flat = contentIds(it.entry.content);
    const entries = new Int32Array(flat.length / 32);
    for (let k = 0; k < entries.length; k++) entries[k] = index.locate(flat, k * 32);
    located.set(it, entries);
  }
  const order = interleave(files, (it) => located.get(it)!.every((e) => e >= 0 && index.storedAsIs(e)));
  const syncs = new Gate(SYNCS_AT_ONCE);
  /** Restore one file; `written` is called once its contents are written (or it failed), before the fsync. */
  const restoreFile = async (it: PlannedItem, dir: string, written: () => void): Promise<void> => {
    const finalPath = path.join(dir, it.segments[it.segments.length - 1]!);
    const tmp = path.join(dir, `.clinicvault-partial-${randomBytes(6).toString('hex')}`);
    const mode = it.entry.mode & 0o777 || 0o600;
    // The file's descriptor while it is being finished: its fsync and close go through it.
    let fd: number | undefined;
    try {
      // The chunks are looked up as entry numbers and sent as flat arrays (index.refs): no object per chunk on this
      // thread.
      const cached = it.sqliteSource !== undefined;
      const entries = located.get(it)!;
      const missing = entries.indexOf(-1);
      if (missing >= 0) {
        const flat = contentIds(it.entry.content);
        throw new ChunkIntegrityError(flat.subarray(missing * 32, missing * 32 + 32).toString('hex'), '(none)', 'is not in any pack (missing from the vault)');
      }
      if (it.entry.size <= SEGMENT) {
        // One job writes the whole file: the worker creates it, writes it and sets its mode and time. This thread
        // then only makes it durable and puts it in place (decision 0027).
        const create = { mode, mtimeMs: it.entry.mtimeMs };
        const r = await pool.run<RestoreJobResult>({ kind: 'restore', path: tmp, fileOffset: 0, create, cached, ...index.refs(entries, 0, entries.length) });
        result.directBytes += r.directBytes;
        progress.bytesDone += it.entry.size;
        emit();
        written();
        fd = await openFd(tmp, 'r+', 0o600);
        const handle = fd;
        await syncs.run(() => fsyncFd(handle));
      } else {
        fd = await openFd(tmp, 'wx', 0o600);
        const handle = fd;
        // Split the file into segments of whole chunks; workers write them in place, in parallel.
        const jobs: Array<Promise<RestoreJobResult>> = [];
        const early: Array<Promise<void>> = [];
        let from = 0;
        let fileOffset = 0;
        let segStart = 0;
        const send = (to: number): void => {
          if (to === from) return;
          const job: RestoreJob = { kind: 'restore', path: tmp, fileOffset: segStart, cached, ...index.refs(entries, from, to) };
          const raw = fileOffset - segStart;
          from = to;
          segStart = fileOffset;
          jobs.push(
            pool.run<RestoreJobResult>(job).then((r) => {
              progress.bytesDone += raw;
              result.directBytes += r.directBytes;
              emit();
              // A large file goes to the disk segment by segment: its one fsync at the end had stalled every file
              // call of this thread (ext4 flushing 200 MB of a database) for ~0.3 s with both cores idle, and the
              // disk had stood idle until then. Errors here are left to that last fsync.
              early.push(syncs.run(() => fdatasyncFd(handle)).catch(() => undefined));
              return r;
            }),
          );
        };
        for (let k = 0; k < entries.length; k++) {
          fileOffset += index.rawLength(entries[k]!);
          if (fileOffset - segStart >= SEGMENT) send(k + 1);
        }
        send(entries.length);
        const settled = await Promise.allSettled(jobs);
        const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed) throw failed.reason;
        written();
        await Promise.all(early);
        await syncs.run(() => fsyncFd(handle));
        await fchmodFd(handle, mode);
        const when = new Date(it.entry.mtimeMs);
        await futimesFd(handle, when);
      }
      const closing = fd!;
      fd = undefined;
      await closeFd(closing);
      if (!opts.overwrite && (await fsp.lstat(finalPath).then(() => true, () => false))) {
        throw new RefusedError(`${finalPath} appeared during the restore; it was left as it is.`);
      }
      await fsp.rename(tmp, finalPath);
      result.files++;
      result.bytes += it.entry.size;
    } catch (err) {
      if (fd !== undefined) await closeFd(fd).catch(() => undefined);
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
      if (isNoSpace(err)) {
        fatal.err ??= new DriveFullError(`The restore target ${target} is full. Free up space or restore to another disk; ${result.files} file(s) were restored so far.`, { cause: err });
      } else if (err instanceof RefusedError || !(err instanceof ChunkIntegrityError || (err instanceof JobFailed && (err.integrity || err.code)) || (err as NodeJS.ErrnoException).code)) {
        // Not about this file (a worker died, the pool was closed): stop rather than report every file as failed.
        fatal.err ??= err;
      } else {
        result.failed.push({ path: it.display, reason: (err as Error).message });
      }
      return;
    } finally {
      written();
      progress.filesDone++;
      emit();
    }
    if (it.sqliteSource) {
      const quick = !opts.fullIntegrityCheck;
      const check = await pool.run<SqliteCheckResult>({ kind: 'sqlite-check', path: finalPath, quick });
      result.databases.push(databaseCheck(finalPath, it.sqliteSource.label, it.sqliteSource.tables, check, quick ? 'quick' : 'full'));
    }
  };

  try {
    // Every folder is asked for first (made in order, parents first, no links followed; Folders), then the files,
    // a few being written at once, each once its folder is there; the workers move on to the next files while
    // written ones are made durable.
    const writing = new Set<Promise<void>>();
    const finishing = new Set<Promise<void>>();
    const folders = new Folders(target);
    const dirOf = new Map<PlannedItem, Promise<string>>();
    for (const it of plan) dirOf.set(it, folders.ensure(it.entry.type === 'dir' ? it.segments : it.segments.slice(0, -1)));
    for (const it of order) {
      opts.signal?.throwIfAborted();
      if (fatal.err) break;
      let written!: () => void;
      const w = new Promise<void>((resolve) => (written = resolve)).then(() => void writing.delete(w));
      writing.add(w);
      const f: Promise<void> = dirOf
        .get(it)!
        .then(
          (dir) => restoreFile(it, dir, written),
          (err: unknown) => {
            // A folder that cannot be made (or is a link) stops the restore, as before any file in it is written.
            fatal.err ??= err;
            written();
          },
        )
        .finally(() => finishing.delete(f));
      finishing.add(f);
      if (writing.size >= FILES_IN_FLIGHT) await Promise.race(writing);
      if (finishing.size >= FILES_FINISHING) await Promise.race(finishing);
    }
    await Promise.all(finishing);
    opts.signal?.throwIfAborted();
    if (fatal.err) throw fatal.err;
    await folders.all();
    const dirs = plan.filter((p) => p.entry.type === 'dir').sort((a, b) => b.segments.length - a.segments.length);
    for (const d of dirs) {
      const when = new Date(d.entry.mtimeMs);
      await fsp.utimes(path.join(target, ...d.segments), when, when).catch(() => undefined);
    }
  } finally {
    emit(true);
  }
  return result;
}

/** The files in the order their jobs are sent: those stored as they are (photos, streamed, their jobs waiting for the
 * disk) mixed with the others (a database, documents: CPU work), each list in its own order, so that the same share of
 * each has been sent at every moment. Each worker then has one job of each kind to run at once (decision 0036). */
export function interleave<T extends { entry: { size: number } }>(files: readonly T[], streamed: (it: T) => boolean): T[] {
  const a: T[] = [];
  const b: T[] = [];
  for (const it of files) (streamed(it) ? a : b).push(it);
  const total = (l: T[]): number => l.reduce((n, it) => n + it.entry.size, 0) || 1;
  const [ta, tb] = [total(a), total(b)];
  const out: T[] = [];
  let [i, j, da, db] = [0, 0, 0, 0];
  while (i < a.length || j < b.length) {
    if (j >= b.length || (i < a.length && da / ta < db / tb)) {
      da += a[i]!.entry.size;
      out.push(a[i++]!);
    } else {
      db += b[j]!.entry.size;
      out.push(b[j++]!);
    }
  }
  return out;
}

function databaseCheck(file: string, label: string, expected: Record<string, number>, check: SqliteCheckResult, checked: 'quick' | 'full'): DatabaseCheck {
  const actual = check.tables;
  const keys = new Set([...Object.keys(expected), ...Object.keys(actual)]);
  const countsOk = [...keys].every((k) => expected[k] === actual[k]);
  return { label, path: file, integrityCheck: check.integrityCheck, checked, expected, actual, ok: check.integrityCheck === 'ok' && countsOk };
}

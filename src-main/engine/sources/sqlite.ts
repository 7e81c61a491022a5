// SQLite source: a committed state of the database (other processes may keep writing), read in place under SQLite's
// read lock (decision 0034) or from a consistent copy, then checked (quick_check, per-table row counts) so the
// snapshot records what a restore must reproduce.
import Database from 'better-sqlite3';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { workerScript } from '../pipeline/worker-script.js';
import { reassertYoungGeneration } from '../pipeline/young-generation.js';
import type { SqliteCheckResult } from '../pipeline/protocol.js';
import { ClinicVaultError, UsageError } from '../errors.js';

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** Page size from the 100-byte header (offset 16, big-endian; 1 means 65536). */
export function readPageSize(header: Buffer): number {
  if (header.length < 100 || header.subarray(0, 16).toString('latin1') !== 'SQLite format 3\u0000') throw new Error('not a SQLite database');
  const v = header.readUInt16BE(16);
  return v === 1 ? 65536 : v;
}

export function tableCounts(db: Database.Database): Record<string, number> {
  const names = db
    .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
    .pluck()
    .all() as string[];
  const out: Record<string, number> = {};
  for (const n of names) out[n] = db.prepare(`SELECT count(*) FROM ${quoteIdent(n)}`).pluck().get() as number;
  return out;
}

/** Pages SQLite may keep cached while a quick check reads the database once: 1 MiB instead of better-sqlite3's 16 MiB
 * default. quick_check of the 200 MB bench database takes the same ~0.3 s either way, and the default's 16 MB were
 * resident at the peak of a restore (heaptrack) and of a first backup, whose checks run beside the chunking. The
 * full integrity_check (test restores, exports) keeps the default: it re-reads index pages, ~0.1 s slower on 1 MiB. */
const QUICK_CHECK_CACHE_KIB = 1024;

/** SQLite's check of a database file (a backup's copy, a restored file) and its tables' row counts. A file too
 * damaged for SQLite to check is reported as failing the check, with SQLite's reason (and no row counts if they
 * cannot be made): the backup then stores it as it is and says so (the backup used to fail, keeping nothing of it),
 * and a restore names the database as not passing. */
export function checkDatabaseFile(file: string, quick: boolean): SqliteCheckResult {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return checkOpenDatabase(db, quick);
  } finally {
    db.close();
  }
}

/** checkDatabaseFile on a connection already open (and perhaps inside a read transaction, holdAndCheck). */
function checkOpenDatabase(db: Database.Database, quick: boolean): SqliteCheckResult {
  if (quick) db.pragma(`cache_size = -${QUICK_CHECK_CACHE_KIB}`);
  let check: string;
  try {
    check = integrityCheck(db, quick);
  } catch (err) {
    check = `SQLite could not check it: ${(err as Error).message}`;
  }
  let tables: Record<string, number> = {};
  try {
    tables = tableCounts(db);
  } catch (err) {
    // The counts are left out; the check says why.
    if (check === 'ok') check = `SQLite could not count the rows: ${(err as Error).message}`;
  }
  return { integrityCheck: check, tables };
}

/** checkDatabaseFile on a thread of its own, which exits when it is done. */
function checkOnThread(file: string, quick: boolean): Promise<SqliteCheckResult> {
  return new Promise((resolve, reject) => {
    const worker = databaseThread({ path: file, quick }, (died) => reject(died));
    worker.once('message', (m: { ok: true; value: SqliteCheckResult } | { ok: false; message: string }) => {
      if (m.ok) resolve(m.value);
      else reject(new Error(m.message));
    });
  });
}

/** A thread of sqlite-check-worker.ts. `died` is called when it exits (after its messages, harmlessly), with its
 * error's message if it failed. */
function databaseThread(workerData: { path: string; quick: boolean; holdMax?: number }, died: (err: Error) => void): Worker {
  const worker = new Worker(workerScript('sqlite-check-worker', import.meta.url), { workerData });
  // Making its heap puts V8's semi-space growth factor back to 2 (young-generation.ts).
  worker.once('online', reassertYoungGeneration);
  let failure: Error | undefined;
  worker.once('error', (err) => (failure = err));
  worker.once('exit', (code) => died(new Error(`the database check stopped unexpectedly (${failure?.message ?? `exit code ${code}`})`)));
  return worker;
}

/** Databases up to this size are read in place under SQLite's read lock (decision 0034); larger ones are copied, so
 * that the clinic app's writers are not held off for the whole chunking of a multi-GB file (a first backup chunks
 * ~0.2 GB/s, a later one ~0.5 GB/s here; the copy ~1 GB/s). */
export const READ_IN_PLACE_MAX = 512 * 1024 * 1024;

/** What a holder thread says, in this order: 'held' (or 'refused', and it exits), then 'checked'; after the 'release'
 * message it ends its transaction and exits. */
type HolderMessage =
  | { type: 'held'; pageSize: number; size: number }
  | { type: 'refused'; why: string }
  | { type: 'checked'; value: SqliteCheckResult };

/** The holder thread's work (sqlite-check-worker.ts): open a read transaction on `file` and keep it, so that no
 * writer can commit while the backup reads the file in place; check the database inside that same transaction. A
 * database in WAL mode is refused (its committed pages may be in the -wal file, not in the file read), as is one
 * larger than maxBytes, or one SQLite cannot open: the backup copies those. */
export function holdAndCheck(file: string, quick: boolean, maxBytes: number, port: { postMessage(m: HolderMessage): void; once(event: 'message', fn: () => void): unknown }): void {
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true, timeout: 30_000 });
    const mode = String(db.pragma('journal_mode', { simple: true })).toLowerCase();
    if (mode === 'wal') throw new Error('WAL mode');
    db.exec('BEGIN');
    // Takes the SHARED lock (and rolls back a hot journal first). From now until COMMIT no writer can commit.
    db.prepare('SELECT count(*) FROM sqlite_master').get();
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    const size = pageSize * (db.pragma('page_count', { simple: true }) as number);
    if (size > maxBytes) throw new Error(`larger than ${maxBytes} bytes`);
    port.postMessage({ type: 'held', pageSize, size });
  } catch (err) {
    try {
      db?.close();
    } catch {
      // Closed with the thread.
    }
    port.postMessage({ type: 'refused', why: (err as Error).message });
    return;
  }
  const held = db;
  port.postMessage({ type: 'checked', value: checkOpenDatabase(held, quick) });
  port.once('message', () => {
    try {
      held.exec('COMMIT');
    } finally {
      held.close();
    }
  });
}

/** A holder thread (holdAndCheck) for `file`. `held` resolves with the database's page size and size once its read
 * lock is taken, or with undefined if it was refused; `checked` with the check made under that lock; `release` ends
 * the transaction and waits for the thread to exit. */
function holdOnThread(file: string, quick: boolean, maxBytes: number): { held: Promise<{ pageSize: number; size: number } | undefined>; checked: Promise<SqliteCheckResult>; release(): Promise<void> } {
  let onHeld!: (v: { pageSize: number; size: number } | undefined) => void;
  let onChecked!: (v: SqliteCheckResult) => void;
  let failChecked!: (e: Error) => void;
  let onExit!: () => void;
  const held = new Promise<{ pageSize: number; size: number } | undefined>((resolve) => (onHeld = resolve));
  const checked = new Promise<SqliteCheckResult>((resolve, reject) => ((onChecked = resolve), (failChecked = reject)));
  checked.catch(() => undefined);
  const exited = new Promise<void>((resolve) => (onExit = resolve));
  const worker = databaseThread({ path: file, quick, holdMax: maxBytes }, (died) => {
    // After its messages these do nothing; without them, the thread died (and the database is copied instead).
    onHeld(undefined);
    failChecked(died);
    onExit();
  });
  worker.on('message', (m: HolderMessage) => {
    if (m.type === 'held') onHeld({ pageSize: m.pageSize, size: m.size });
    else if (m.type === 'refused') onHeld(undefined);
    else onChecked(m.value);
  });
  let releasing: Promise<void> | undefined;
  return {
    held,
    checked,
    release: () =>
      (releasing ??= (async () => {
        if (await held) worker.postMessage('release');
        await exited;
      })()),
  };
}

/** 'ok', or SQLite's list of problems. quick: PRAGMA quick_check (every page and record, without comparing
 * index content to tables; several times faster), used at backup time; restores run the full check. */
export function integrityCheck(db: Database.Database, quick = false): string {
  const rows = db.prepare(quick ? 'PRAGMA quick_check' : 'PRAGMA integrity_check').pluck().all() as string[];
  return rows.join('\n');
}

/** Checks that need no copy: the file exists and is a SQLite database. Cheap; runs before any work starts. */
export async function checkSqliteSource(source: string): Promise<void> {
  const st = await fsp.stat(source).catch(() => undefined);
  if (!st) throw new UsageError(`The database file ${source} does not exist. Check the path in the backup settings.`);
  if (!st.isFile()) throw new UsageError(`${source} is not a file, so it cannot be a SQLite database.`);
  const fh = await fsp.open(source, 'r');
  const header = Buffer.alloc(100);
  await fh.read(header, 0, 100, 0).finally(() => fh.close());
  try {
    readPageSize(header);
  } catch {
    throw new UsageError(`${source} is not a SQLite database (its first bytes are not a SQLite header).`);
  }
}

/** A fresh private path for a copy, and how to remove it (with any journal files beside it). */
export async function copyPathIn(tmpDir: string): Promise<{ copyPath: string; cleanup: () => Promise<void> }> {
  await fsp.mkdir(tmpDir, { recursive: true, mode: 0o700 });
  const copyPath = path.join(tmpDir, `sqlite-copy-${randomBytes(6).toString('hex')}.sqlite`);
  let removing: Promise<void> | undefined;
  return {
    copyPath,
    // Once: the backup starts it as soon as it has read the copy, and waits for it when it ends.
    cleanup: () =>
      (removing ??= (async () => {
        for (const suffix of ['', '-wal', '-shm', '-journal']) await fsp.rm(copyPath + suffix, { force: true });
      })()),
  };
}

/** The consistent copy itself (on a worker thread, or on the CLI's main thread while it unlocks the vault), written
 * to disk before it returns (see writeOut). */
export async function copySqliteTo(source: string, copyPath: string): Promise<{ pageSize: number; size: number }> {
  const facts = await makeCopy(source, copyPath);
  await writeOut(copyPath);
  return facts;
}

/** One step copies every page under one read transaction, so the copy is a committed state of the database. */
async function makeCopy(source: string, copyPath: string): Promise<{ pageSize: number; size: number }> {
  const src = new Database(source, { readonly: true, fileMustExist: true, timeout: 30_000 });
  try {
    if (process.platform !== 'win32' && String(src.pragma('journal_mode', { simple: true })).toLowerCase() !== 'wal') {
      // Rollback-journal mode: while this connection holds a read transaction (a SHARED lock), no writer can
      // change the file, so a plain copy of it is a committed state (SQLite's own advice for copying a live
      // database). About 4x faster than the online-backup API (0.17 instead of 0.7 s for 200 MB), and writers
      // wait for less time. Not on Windows, whose byte-range locks make the locked region unreadable; not in WAL
      // mode, where committed pages may still be only in the -wal file.
      src.exec('BEGIN');
      try {
        src.prepare('SELECT count(*) FROM sqlite_master').get(); // takes the SHARED lock (and rolls back a hot journal first)
        // A clone where the file system makes one (APFS: libuv then asks copyfile for COPYFILE_CLONE, and copies
        // the data without the flag; Btrfs, XFS): instant, nothing to write out. A copy elsewhere (ext4).
        await fsp.copyFile(source, copyPath, fsConstants.COPYFILE_FICLONE);
      } finally {
        src.exec('COMMIT');
      }
    } else {
      await src.backup(copyPath, { progress: () => 0x7fffffff });
    }
  } finally {
    src.close();
  }
  await fsp.chmod(copyPath, 0o600);
  const copy = new Database(copyPath, { fileMustExist: true });
  try {
    // The copy is a private file: keep it in rollback mode so nothing lingers in a -wal beside it.
    copy.pragma('journal_mode = DELETE');
  } finally {
    copy.close();
  }
  const h = Buffer.alloc(100);
  const ch = await fsp.open(copyPath, 'r');
  await ch.read(h, 0, 100, 0).finally(() => ch.close());
  return { pageSize: readPageSize(h), size: (await fsp.stat(copyPath)).size };
}

/** Put the copy on the disk now (one fdatasync). It needs no durability, it is deleted when the backup ends; but on
 * ext4 the next fsync of any file on this disk (a pack, the index, the inventory) otherwise waited for its ~200 MB,
 * ~0.2 s with both cores idle (decision 0016). */
async function writeOut(copyPath: string): Promise<void> {
  const written = await fsp.open(copyPath, 'r+');
  try {
    await written.datasync();
  } finally {
    await written.close();
  }
}

/** Where a backup reads a database: a copy at `path`, or the database itself through `fd` while a read transaction
 * holds its writers off (decision 0034). */
export interface SqliteRead {
  pageSize: number;
  size: number;
  path: string;
  /** A descriptor of the file to read, where it is read in place. Readers must not close it (see startSqliteCopy). */
  fd?: number;
}

/** A database made ready for reading before the backup itself starts (see startSqliteCopy). */
export interface EarlySqliteCopy {
  source: string;
  /** Where a copy is made, if one is (removed by cleanup). */
  copyPath: string;
  made: Promise<SqliteRead>;
  /** Resolves once it is known whether the database is read in place (at once where it cannot be). */
  decided: Promise<void>;
  /** Ends the read transaction, or removes the copy; once, however often it is called. */
  cleanup: () => Promise<void>;
  /** If a copy is made before `busy` settles, run its quick check now, on a thread of its own (a CLI waiting for
   * scrypt: one core is idle then, and both are busy once the backup runs). Read in place, the database is checked
   * under its lock from the start anyway. */
  checkWhile(busy: Promise<unknown>): Promise<void>;
  /** The quick check's result, if it was made here (in place, or by checkWhile); otherwise the backup has a worker
   * run it. Known once `made` has resolved. */
  checked?: Promise<SqliteCheckResult>;
}

/** Make `source` ready to be read by a backup, starting now: a caller that must still unlock the vault (scrypt runs
 * on libuv's threads, ~0.25 s) has it done meanwhile. A database in rollback-journal mode of up to READ_IN_PLACE_MAX
 * is read in place: a thread of its own opens a read transaction, which holds the clinic app's writers off until
 * cleanup, and checks it meanwhile; nothing is written (decision 0034). Otherwise (WAL mode, Windows, a larger file,
 * or one that thread cannot open) a consistent copy is made, by `copy` if given (on a worker), else on this thread.
 * The backup that is given it takes it over, and cleans it up when it ends, whatever happens. Throws at once
 * (UsageError) if the file is not a database. */
export async function startSqliteCopy(
  source: string,
  tmpDir: string,
  opts: { copy?: (source: string, copyPath: string) => Promise<{ pageSize: number; size: number }>; readInPlaceMax?: number } = {},
): Promise<EarlySqliteCopy> {
  await checkSqliteSource(source);
  const { copyPath, cleanup } = await copyPathIn(tmpDir);
  // Not on Windows, whose byte-range locks make the locked region unreadable.
  const holder = process.platform === 'win32' ? undefined : holdOnThread(source, true, opts.readInPlaceMax ?? READ_IN_PLACE_MAX);
  let fd: number | undefined;
  // The copy goes to the disk while the backup reads it, and is removed only after that.
  let written: Promise<void> = Promise.resolve();
  let cleaning: Promise<void> | undefined;
  const early: EarlySqliteCopy = {
    source,
    copyPath,
    made: undefined as unknown as Promise<SqliteRead>,
    decided: holder ? holder.held.then(() => undefined) : Promise.resolve(),
    // After the check too: a copy of the clinic's data must not outlive the backup (deleting a file still open
    // fails on Windows, and the check's thread may still be reading it if the unlock failed). The descriptor read in
    // place is closed only after the transaction has ended: closing any descriptor of a file drops every POSIX
    // lock this process holds on it, SQLite's read lock too (the backup's readers never close it).
    cleanup: () =>
      (cleaning ??= (async () => {
        await Promise.allSettled([early.made, early.checked]);
        await holder?.release();
        if (fd !== undefined) fs.closeSync(fd);
        await written.catch(() => undefined);
        await cleanup();
      })()),
    async checkWhile(busy: Promise<unknown>): Promise<void> {
      let over = false;
      const waited = busy.then(
        () => void (over = true),
        () => void (over = true),
      );
      const ready = await Promise.race([early.made.then(() => true, () => false), waited.then(() => false)]);
      if (!ready || over || early.checked) return;
      // On a thread of its own: run here, it held up the backup whenever the unlock ended while it ran (a copy made
      // late, just before the unlock ended, delayed the workers' start by ~0.2 s in a CPU trace).
      early.checked = checkOnThread(copyPath, true);
      early.checked.catch(() => undefined);
    },
  };
  early.made = (async (): Promise<SqliteRead> => {
    const held = holder && (await holder.held);
    if (held) {
      early.checked = holder.checked;
      fd = fs.openSync(source, 'r');
      return { ...held, path: source, fd };
    }
    const facts = opts.copy ? await opts.copy(source, copyPath) : await makeCopy(source, copyPath);
    if (!opts.copy) written = writeOut(copyPath);
    written.catch(() => undefined);
    return { ...facts, path: copyPath };
  })();
  early.made.catch(() => undefined);
  return early;
}

export function describeCopyError(source: string, err: unknown): ClinicVaultError {
  if (err instanceof ClinicVaultError) return err;
  return new ClinicVaultError(`Could not read a consistent state of the database ${source}: ${(err as Error).message}`, undefined, { cause: err });
}

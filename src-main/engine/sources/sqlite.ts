// SQLite source: a consistent copy made with SQLite's online backup API (other processes may keep writing),
// then checked (integrity_check, per-table row counts) so the snapshot records what a restore must reproduce.
import Database from 'better-sqlite3';
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
  } finally {
    db.close();
  }
}

/** checkDatabaseFile on a thread of its own, which exits when it is done. */
function checkOnThread(file: string, quick: boolean): Promise<SqliteCheckResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(workerScript('sqlite-check-worker', import.meta.url), { workerData: { path: file, quick } });
    worker.once('message', (m: { ok: true; value: SqliteCheckResult } | { ok: false; message: string }) => {
      if (m.ok) resolve(m.value);
      else reject(new Error(m.message));
    });
    // Making its heap puts V8's semi-space growth factor back to 2 (young-generation.ts).
    worker.once('online', reassertYoungGeneration);
    worker.once('error', reject);
    // After a message this does nothing (the promise is settled); without one, the thread died.
    worker.once('exit', (code) => reject(new Error(`the database check stopped unexpectedly (exit code ${code})`)));
  });
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

/** A consistent copy being made before the backup itself starts (see startSqliteCopy). */
export interface EarlySqliteCopy {
  source: string;
  copyPath: string;
  made: Promise<{ pageSize: number; size: number }>;
  cleanup: () => Promise<void>;
  /** If the copy is made before `busy` settles, run its quick check now, on this thread (a CLI waiting for scrypt:
   * one core is idle then, and both are busy once the backup runs). */
  checkWhile(busy: Promise<unknown>): Promise<void>;
  /** The quick check's result, if checkWhile ran it; otherwise the backup has a worker run it. */
  checked?: Promise<SqliteCheckResult>;
}

/** Start a consistent copy of `source` now, on this thread: a caller that must still unlock the vault (scrypt runs on
 * libuv's threads, ~0.25 s) has the copy, ~0.2 s for 200 MB, made meanwhile. The backup that is given it takes it
 * over, and removes it when it ends, whatever happens. Throws at once (UsageError) if the file is not a database. */
export async function startSqliteCopy(source: string, tmpDir: string): Promise<EarlySqliteCopy> {
  await checkSqliteSource(source);
  const { copyPath, cleanup } = await copyPathIn(tmpDir);
  const made = makeCopy(source, copyPath);
  made.catch(() => undefined);
  // The backup may read it as soon as it is made; it goes to the disk meanwhile, and is removed only after that.
  const written = made.then(() => writeOut(copyPath));
  written.catch(() => undefined);
  const early: EarlySqliteCopy = {
    source,
    copyPath,
    made,
    // After the check too: a copy of the clinic's data must not outlive the backup (deleting a file still open
    // fails on Windows, and the check's thread may still be reading it if the unlock failed).
    cleanup: () => Promise.allSettled([made, written, early.checked]).then(cleanup),
    async checkWhile(busy: Promise<unknown>): Promise<void> {
      let over = false;
      const waited = busy.then(
        () => void (over = true),
        () => void (over = true),
      );
      const ready = await Promise.race([made.then(() => true, () => false), waited.then(() => false)]);
      if (!ready || over) return;
      // On a thread of its own: run here, it held up the backup whenever the unlock ended while it ran (a copy made
      // late, just before the unlock ended, delayed the workers' start by ~0.2 s in a CPU trace).
      early.checked = checkOnThread(copyPath, true);
      early.checked.catch(() => undefined);
    },
  };
  return early;
}


export function describeCopyError(source: string, err: unknown): ClinicVaultError {
  if (err instanceof ClinicVaultError) return err;
  return new ClinicVaultError(`Could not make a consistent copy of the database ${source}: ${(err as Error).message}`, undefined, { cause: err });
}

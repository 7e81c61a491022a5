// Backup: databases and folders into a vault. Order of durability: packs, then the index that lists them, then
// the snapshot that references them. A run that dies anywhere leaves earlier snapshots untouched.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { sqliteChunkSize } from './chunker/chunkers.js';
import { ClinicVaultError, DriveFullError, UsageError, formatBytes, isNoSpace } from './errors.js';
import { EnginePool, JobFailed } from './pipeline/pool.js';
import type { ChunkResult, SqliteCheckResult } from './pipeline/protocol.js';
import { describeCopyError, startSqliteCopy, type EarlySqliteCopy, type SqliteRead } from './sources/sqlite.js';
import { connect, describeDatabase, describePgError, findPgTools, parsePostgresUrl, pgEnv, type PgTarget } from './sources/postgres.js';
import { DEFAULT_EXCLUDES, walkFolder, describeFsError, type WalkedFile } from './sources/folder.js';
import { writeIndexFile, type MasterIndex, type PackRecord } from './vault/index-file.js';
import { VaultLock } from './vault/lock.js';
import { decodeContent, draftSnapshot, type AuditRecord, type FolderSource, type PostgresSource, type Snapshot, type SnapshotSource, type SqliteSource, type TreeEntry } from './vault/snapshot.js';
import { DEFAULT_DUMP_CHUNKING, type Vault } from './vault/vault.js';

export interface BackupProgress {
  phase: 'preparing' | 'reading' | 'finishing';
  source?: string;
  filesDone: number;
  filesTotal: number;
  bytesDone: number;
  bytesTotal: number;
}

export interface BackupOptions {
  sqlite?: string[];
  /** PostgreSQL connection URLs (no password: PGPASSWORD / .pgpass / the app's secret store). */
  postgres?: string[];
  /** Include role passwords in the PostgreSQL globals (needs a superuser); off by default. */
  pgRolePasswords?: boolean;
  folders?: string[];
  tags?: string[];
  excludes?: string[];
  tmpDir?: string;
  /** `sqlite` databases already made ready to read (startSqliteCopy, with the same resolved path: held in place or
   * copied). The backup uses them instead of making its own, and cleans every one of them up when it ends. */
  sqliteCopies?: EarlySqliteCopy[];
  host?: string;
  appVersion: string;
  /** Audit entries to carry inside the snapshot, so the history survives the loss of the PC. */
  audit?: AuditRecord[];
  onProgress?: (p: BackupProgress) => void;
  log?: (msg: string) => void;
  signal?: AbortSignal;
  now?: () => Date;
}

export interface BackupResult {
  snapshotId: string;
  snapshot: Snapshot;
  skipped: Array<{ source: string; path: string; reason: string }>;
  warnings: string[];
  partial: boolean;
  stats: BackupStats;
}

export interface BackupStats {
  chunksNew: number;
  chunksDuplicate: number;
  bytesNew: number;
  bytesStored: number;
  packsWritten: number;
}

/** Database images are cut by several workers at once, in segments of this size; each segment's new pages are
 * grouped on their own, which restore's segments of the same size rely on (restore.ts SEGMENT). */
const DB_SEGMENT = 32 * 1024 * 1024;

/** What to tell the owner when a folder to back up cannot be read at all. */
function unreadableFolder(dir: string, reason: string): string {
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return `The folder ${dir} does not exist. Check the path, or connect the drive or share it is on.`;
    if (code === 'ENOTDIR') return `${dir} is not a folder (a part of its path is a file). Check the path.`;
  }
  if (st && !st.isDirectory()) return `${dir} is a file, not a folder. Give the folder that holds the files to back up.`;
  return `Cannot read the folder ${dir}: ${reason}. Is the drive or share connected?`;
}

export function sourceLabel(p: string): string {
  return path.basename(path.resolve(p));
}

function validateLabels(sources: Array<{ label: string; path: string }>): void {
  const seen = new Map<string, string>();
  for (const s of sources) {
    if (!s.label || s.label === '.' || s.label === '..') throw new UsageError(`Cannot back up ${s.path}: it has no usable name.`);
    const other = seen.get(s.label);
    if (other) throw new UsageError(`Two sources are both named "${s.label}" (${other} and ${s.path}); restore would mix them up. Rename one.`);
    seen.set(s.label, s.path);
  }
}

export async function backup(vault: Vault, opts: BackupOptions): Promise<BackupResult> {
  try {
    return await backupWith(vault, opts);
  } finally {
    for (const c of opts.sqliteCopies ?? []) await c.cleanup().catch(() => undefined);
  }
}

async function backupWith(vault: Vault, opts: BackupOptions): Promise<BackupResult> {
  const sqlite = (opts.sqlite ?? []).map((p) => path.resolve(p));
  const folders = (opts.folders ?? []).map((p) => path.resolve(p));
  const postgres = (opts.postgres ?? []).map((u) => parsePostgresUrl(u));
  if (sqlite.length + folders.length + postgres.length === 0) {
    throw new UsageError('Nothing to back up: give at least one --sqlite FILE, --postgres URL or --folder DIR.');
  }
  validateLabels([...[...sqlite, ...folders].map((p) => ({ label: sourceLabel(p), path: p })), ...postgres.map((t) => ({ label: t.database, path: t.url }))]);
  vault.checkWriterConfig();
  const now = opts.now ?? (() => new Date());
  const log = opts.log ?? (() => undefined);
  const started = now();
  const t0 = performance.now();

  const lock = await VaultLock.acquire(vault.storage, 'backup', log);
  try {
    const leftovers = await vault.storage.removeLeftoverTemps();
    if (leftovers > 0) log(`Removed ${leftovers} unfinished file(s) left by an interrupted run.`);
    const index = await vault.loadIndex({ recoverOrphans: true });
    if (index.recoveredPacks.length > 0) log(`Reused ${index.recoveredPacks.length} pack(s) written by an interrupted backup.`);
    const run = new BackupRun(vault, index, opts, started);
    try {
      const { sources, parentId } = await run.collect(sqlite, folders, postgres);
      opts.onProgress?.({ ...run.progress, phase: 'finishing' });
      await run.flush();
      // Compressed on the thread pool while the index is written. Started before the flush, it had held ~7 MB
      // more at the first backup's peak, when the workers end (185-187 against 179-181 MiB, three runs each).
      const draft = draftSnapshot({
        version: 1,
        time: started.toISOString(),
        host: opts.host ?? os.hostname(),
        appVersion: opts.appVersion,
        tags: [...new Set(opts.tags ?? [])],
        parent: parentId,
        sources,
        audit: opts.audit ?? [],
      });
      await run.writeIndex();
      const { id: snapshotId, snapshot } = await draft.write(vault.storage, vault.keys, {
        bytesRead: run.bytesRead,
        bytesAdded: run.stats.bytesStored,
        chunksAdded: run.stats.chunksNew,
        filesNew: run.filesNew,
        filesChanged: run.filesChanged,
        filesUnchanged: run.filesUnchanged,
        durationMs: Math.round(performance.now() - t0),
      });
      await run.caching;
      return { snapshotId, snapshot, skipped: run.skipped, warnings: run.warnings, partial: run.skipped.length > 0 || run.warnings.length > 0, stats: run.stats };
    } catch (err) {
      if (isNoSpace(err)) throw await driveFull(vault, run, err);
      throw err;
    } finally {
      await run.cleanup();
    }
  } finally {
    await lock.release().catch(() => undefined);
  }
}

async function driveFull(vault: Vault, run: BackupRun, cause: unknown): Promise<DriveFullError> {
  const free = (await vault.storage.diskSpace())?.free ?? 0;
  const remaining = Math.max(0, run.progress.bytesTotal - run.progress.bytesDone);
  const needed = Math.max(0, run.stats.bytesNew - run.stats.bytesStored) + remaining;
  return new DriveFullError(
    `The backup drive is full (${formatBytes(free)} free at ${vault.location}). This backup had written ${formatBytes(run.stats.bytesStored)} ` +
      `and needed up to ${formatBytes(needed)} more. Free up space on the drive or use a larger one, then run the backup again. ` +
      'No new snapshot was recorded; earlier backups on the drive are intact.',
    { cause },
  );
}

type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

class BackupRun {
  readonly progress: BackupProgress = { phase: 'preparing', filesDone: 0, filesTotal: 0, bytesDone: 0, bytesTotal: 0 };
  readonly skipped: BackupResult['skipped'] = [];
  readonly warnings: string[] = [];
  readonly stats: BackupStats = { chunksNew: 0, chunksDuplicate: 0, bytesNew: 0, bytesStored: 0, packsWritten: 0 };
  bytesRead = 0;
  filesNew = 0;
  filesChanged = 0;
  filesUnchanged = 0;
  private cleanups: Array<() => Promise<void>> = [];
  private lastEmit = 0;
  private readonly excludes: string[];
  /** Packs this run wrote, plus packs an interrupted run left without an index: the next index file lists them. */
  private readonly written: PackRecord[] = [];
  private pool: EnginePool | undefined;
  /** The workers being ended, once the packs are durable (flush). */
  private closing: Promise<void> | undefined;
  /** The local cache of the index being written (writeIndex); the backup waits for it before it returns. */
  caching: Promise<void> | undefined;
  private fatal: unknown;

  constructor(
    private readonly vault: Vault,
    private readonly index: MasterIndex,
    private readonly opts: BackupOptions,
    private readonly started: Date,
  ) {
    this.excludes = opts.excludes ?? DEFAULT_EXCLUDES;
    for (const id of index.recoveredPacks) {
      const rec = index.packs.get(id);
      if (rec) this.written.push(rec);
    }
  }

  private emit(force = false): void {
    const t = performance.now();
    if (!force && t - this.lastEmit < 100) return;
    this.lastEmit = t;
    this.opts.onProgress?.({ ...this.progress });
  }

  async cleanup(): Promise<void> {
    await this.pool?.close().catch(() => undefined);
    this.pool = undefined;
    await this.closing?.catch(() => undefined);
    for (const c of this.cleanups) await c().catch(() => undefined);
    this.cleanups = [];
  }

  private startPool(): EnginePool {
    const pool = new EnginePool(this.vault.location, this.vault.keys, this.vault.config, {
      knownIds: this.index.sharedIds(),
      onEvent: (ev) => {
        this.written.push(this.index.addPack(ev.id, Buffer.from(ev.header)));
        this.stats.bytesStored += ev.size;
        this.stats.packsWritten++;
      },
    });
    this.opts.signal?.addEventListener('abort', () => void pool.close(), { once: true });
    return pool;
  }

  /** Queue a job; the result never rejects, and an error on the vault's side stops the whole run at once. */
  private job<T extends ChunkResult | SqliteCheckResult>(pool: EnginePool, run: Promise<T>): Promise<Settled<T>> {
    return run.then(
      (value) => {
        if ('chunksNew' in value) {
          this.stats.chunksNew += value.chunksNew;
          this.stats.bytesNew += value.bytesNew;
          this.stats.chunksDuplicate += value.ids.length / 32 - value.chunksNew;
          this.bytesRead += value.bytesRead;
          this.progress.bytesDone += value.bytesRead;
          this.emit();
        }
        return { ok: true as const, value };
      },
      (error: unknown) => {
        if (!(error instanceof JobFailed && error.source)) {
          this.fatal ??= error;
          void pool.close();
        }
        return { ok: false as const, error };
      },
    );
  }

  private check<T>(r: Settled<T>): T {
    this.opts.signal?.throwIfAborted();
    if (this.fatal) throw this.fatal;
    if (!r.ok) throw r.error;
    return r.value;
  }

  async collect(sqlite: string[], folders: string[], postgres: PgTarget[] = []): Promise<{ sources: SnapshotSource[]; parentId: string | null }> {
    const tmpDir = this.opts.tmpDir ?? path.join(os.tmpdir(), 'clinicvault');
    // 0. PostgreSQL: a repeatable-read transaction per database, whose snapshot pg_dump will share.
    const pgs = [];
    for (const target of postgres) {
      this.progress.source = target.database;
      this.emit(true);
      const client = await connect(target);
      this.cleanups.push(() => client.end());
      try {
        await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');
        const snap = (await client.query<{ s: string }>('SELECT pg_export_snapshot() AS s')).rows[0]!.s;
        const desc = await describeDatabase(client);
        const tools = await findPgTools(desc.major, desc.serverVersion);
        pgs.push({ target, client, snap, desc, tools });
        this.progress.filesTotal++;
        this.progress.bytesTotal += desc.databaseSize;
      } catch (err) {
        throw err instanceof ClinicVaultError ? err : describePgError(err, target);
      }
    }
    // 1. Databases first, so that what is stored is as close to the start time as possible: read in place under
    // their read lock, or copied (by workers), while this thread walks the folders.
    const pool = (this.pool = this.startPool());
    const copies = [];
    for (const db of sqlite) {
      // Read in place under the database's read lock where it can be, else copied (startSqliteCopy, decision 0034);
      // the CLI starts this while it unlocks the vault.
      let early = this.opts.sqliteCopies?.find((c) => c.source === db);
      if (!early) {
        early = await startSqliteCopy(db, tmpDir, { copy: (source, copyPath) => pool.run<{ pageSize: number; size: number }>({ kind: 'sqlite-copy', source, path: copyPath }) });
        this.cleanups.push(early.cleanup);
      }
      const made: Promise<Settled<SqliteRead>> = early.made.then(
        (value) => {
          this.progress.bytesTotal += value.size;
          return { ok: true as const, value };
        },
        (error: unknown) => ({ ok: false as const, error: describeCopyError(db, error) }),
      );
      copies.push({ db, early, made });
      this.progress.filesTotal++;
    }
    // A database read in place has its segments queued before any file's (below, as soon as it can be read), so its
    // writers wait for its chunking only, not the whole backup's: known within ~0.1 s (the CLI knows it already).
    for (const c of copies) await c.early.decided;
    // Each database is cut as soon as it can be read, while this thread walks the folders (~0.3 s of a second backup
    // that the workers spent waiting).
    const dbJobs = copies.map(async ({ early, made }) => {
      const copy = this.check(await made);
      const fixed = sqliteChunkSize(copy.pageSize, this.vault.config.chunking.sqlite.minBytes);
      // Checked already under its read lock, or while the CLI unlocked the vault (EarlySqliteCopy.checkWhile).
      const check = this.job(pool, early.checked ?? pool.run<SqliteCheckResult>({ kind: 'sqlite-check', path: copy.path, quick: true }));
      const segments: Array<Promise<Settled<ChunkResult>>> = [];
      for (let off = 0; off < Math.max(copy.size, 1); off += DB_SEGMENT) {
        // Read in place, the segments stop at the database's committed size, whatever the file holds beyond it.
        const length = Math.min(DB_SEGMENT, copy.size - off);
        segments.push(this.job(pool, pool.run<ChunkResult>({ kind: 'chunk', path: copy.path, fd: copy.fd, offset: off, length, fixed, group: true })));
      }
      return { copy, check, segments };
    });
    // A failed copy is reported where its result is collected, not as an unhandled rejection.
    for (const d of dbJobs) d.catch(() => undefined);
    // 2. Walk folders and compare with the parent snapshot to know how much must be read.
    // Only the parent of each folder is needed in full; the list itself is kept without file lists, and taken from
    // the local cache where it can be (snapshot-cache.ts).
    const { snapshots, latestFull } = await this.vault.listSnapshots({ entries: false, cached: true });
    const fullParents = new Map<string, Snapshot>(latestFull ? [[latestFull.id, latestFull.snapshot]] : []);
    let parentId: string | null = null;
    const walks = [];
    for (const dir of folders) {
      const walk = await walkFolder(dir, this.excludes).catch((err: unknown) => {
        throw new UsageError(`Cannot read the folder ${dir}: ${describeFsError(err)}.`);
      });
      const root = walk.skipped.find((s) => s.path === '.');
      if (walk.files.length === 0 && root) throw new UsageError(unreadableFolder(dir, root.reason));
      const found = findParent(snapshots, dir);
      if (found && !fullParents.has(found.id)) {
        // Listed from the cache, an older backup may have been damaged since: the folder is then read afresh (its
        // unchanged files dedup to the chunks already stored), as if it had no parent.
        const whole = await this.vault.readSnapshot(found.id).catch(() => undefined);
        if (whole) fullParents.set(found.id, whole);
      }
      const parentSnap = found && fullParents.get(found.id);
      const parent = found && parentSnap && findParent([{ id: found.id, snapshot: parentSnap }], dir);
      if (parent) parentId = parentId ?? parent.id;
      const prev = new Map<string, TreeEntry>((parent?.source.entries ?? []).map((e) => [e.path, e]));
      const plan = walk.files.map((f) => ({ f, reuse: f.type === 'file' ? unchanged(prev.get(f.rel), f, this.index) : undefined }));
      for (const p of plan) {
        if (p.f.type !== 'file') continue;
        this.progress.filesTotal++;
        if (p.reuse === undefined) this.progress.bytesTotal += p.f.size;
      }
      walks.push({ dir, walk, plan, prev });
    }
    this.progress.phase = 'reading';
    this.emit(true);

    // 3. Queue everything that must be read; the workers read, cut, dedup, compress, seal and write packs.
    const dumpCdc = this.vault.config.chunking.dumps ?? DEFAULT_DUMP_CHUNKING;
    const pgJobs = pgs.map(({ target, snap, tools }) => {
      const env = pgEnv(target);
      const dump = this.job(
        pool,
        pool.run<ChunkResult>({ kind: 'command', command: tools.pgDump, args: ['--format=custom', '--compress=0', '--no-password', `--snapshot=${snap}`], env, cdc: dumpCdc }),
      );
      const globalsArgs = ['--globals-only', '--no-password', `--database=${target.database}`];
      if (!this.opts.pgRolePasswords) globalsArgs.push('--no-role-passwords');
      const globals = this.job(pool, pool.run<ChunkResult>({ kind: 'command', command: tools.pgDumpall, args: globalsArgs, env, cdc: dumpCdc }));
      return { dump, globals };
    });
    const fileJobs = walks.map(({ plan }) =>
      plan.map(({ f, reuse }) =>
        f.type === 'file' && reuse === undefined ? this.job(pool, pool.run<ChunkResult>({ kind: 'chunk', path: f.abs, offset: 0 })) : undefined,
      ),
    );

    // 4. Collect results in order.
    const sources: SnapshotSource[] = [];
    for (const [i, { target, client, snap, desc, tools }] of pgs.entries()) {
      this.progress.source = target.database;
      const dumped = await pgJobs[i]!.dump;
      if (!dumped.ok && dumped.error instanceof JobFailed && dumped.error.source && !this.fatal) {
        throw new ClinicVaultError(`The PostgreSQL backup of "${target.database}" failed: ${dumped.error.message}. No snapshot was recorded; earlier backups are intact.`);
      }
      const dump = this.check(dumped);
      // The dump is complete: the transaction that held its snapshot can end.
      await client.query('COMMIT').catch(() => undefined);
      const g = await pgJobs[i]!.globals;
      let globals: PostgresSource['globals'] = { included: true, rolePasswords: !!this.opts.pgRolePasswords };
      const entries: TreeEntry[] = [
        { path: `${target.database}.dump`, type: 'file', size: dump.bytesRead, mode: 0o600, mtimeMs: this.started.getTime(), content: Buffer.from(dump.ids).toString('base64') },
      ];
      if (g.ok) {
        entries.push({ path: 'globals.sql', type: 'file', size: g.value.bytesRead, mode: 0o600, mtimeMs: this.started.getTime(), content: Buffer.from(g.value.ids).toString('base64') });
      } else {
        if (this.fatal) throw this.fatal;
        const why = (g.error as Error).message;
        globals = { included: false, rolePasswords: false, problem: why };
        this.warnings.push(`The roles of the PostgreSQL server could not be saved (${why}). The database itself was backed up; on a new server, create its owner role "${desc.owner}" before restoring.`);
      }
      this.progress.filesDone++;
      sources.push({
        kind: 'postgres',
        label: target.database,
        originalPath: target.url,
        server: { host: target.host, port: target.port, database: target.database, user: target.user, version: desc.serverVersion, versionNum: desc.serverVersionNum },
        databaseSize: desc.databaseSize,
        owner: desc.owner,
        encoding: desc.encoding,
        collate: desc.collate,
        ctype: desc.ctype,
        dump: { format: 'custom', compression: 0, size: dump.bytesRead, tool: tools.version, snapshot: snap },
        globals,
        tables: desc.tables,
        migrations: desc.migrations,
        entries,
      });
    }
    for (const [i, { db, early }] of copies.entries()) {
      const label = sourceLabel(db);
      this.progress.source = label;
      const { copy, check, segments } = await dbJobs[i]!;
      const ids: Uint8Array[] = [];
      let read = 0;
      for (const seg of segments) {
        const r = this.check(await seg);
        ids.push(r.ids);
        read += r.bytesRead;
      }
      const { integrityCheck, tables } = this.check(await check);
      // Read and checked: the database's writers are let go now, or its copy goes (deleting 200 MB took ~65 ms at
      // the very end), while the backup ends. The backup waits for that before it returns, whatever happens.
      early.cleanup().catch(() => undefined);
      if (integrityCheck !== 'ok') {
        this.warnings.push(`The database ${db} failed SQLite's quick integrity check (${integrityCheck.split('\n')[0]}). It was backed up as it is; have it checked.`);
      }
      this.progress.filesDone++;
      const src: SqliteSource = {
        kind: 'sqlite',
        label,
        originalPath: db,
        pageSize: copy.pageSize,
        size: copy.size,
        tables,
        integrityCheck,
        entries: [{ path: label, type: 'file', size: read, mode: 0o600, mtimeMs: this.started.getTime(), content: Buffer.concat(ids).toString('base64') }],
      };
      sources.push(src);
    }

    for (const [w, { dir, walk, plan, prev }] of walks.entries()) {
      const label = sourceLabel(dir);
      this.progress.source = label;
      const entries: TreeEntry[] = [];
      let fileCount = 0;
      let bytes = 0;
      for (const [k, { f, reuse }] of plan.entries()) {
        if (f.type === 'dir') {
          entries.push({ path: f.rel, type: 'dir', size: 0, mode: f.mode, mtimeMs: f.mtimeMs });
          continue;
        }
        let content: string;
        if (reuse !== undefined) {
          content = reuse;
          this.filesUnchanged++;
        } else {
          const r = await fileJobs[w]![k]!;
          if (!r.ok && r.error instanceof JobFailed && r.error.source && !this.fatal) {
            walk.skipped.push({ path: f.rel, reason: describeFsError(r.error) });
            this.progress.filesDone++;
            continue;
          }
          const value = this.check(r);
          content = Buffer.from(value.ids).toString('base64');
          // The file changed size while we read it: keep what we read, it is self-consistent chunk by chunk.
          f.size = value.bytesRead;
          if (prev.has(f.rel)) this.filesChanged++;
          else this.filesNew++;
        }
        this.progress.filesDone++;
        fileCount++;
        bytes += f.size;
        entries.push({ path: f.rel, type: 'file', size: f.size, mode: f.mode, mtimeMs: f.mtimeMs, ino: f.ino, content });
        this.emit();
      }
      for (const s of walk.skipped) this.skipped.push({ source: label, ...s });
      const src: FolderSource = {
        kind: 'folder',
        label,
        originalPath: dir,
        fileCount,
        bytes,
        excludes: this.excludes,
        skipped: walk.skipped,
        entries,
      };
      sources.push(src);
    }
    this.emit(true);
    return { sources, parentId };
  }

  /** Make every pack durable and end the workers. */
  async flush(): Promise<void> {
    if (this.pool) {
      await this.pool.everyWorker({ kind: 'flush' }).catch((err: unknown) => {
        throw this.fatal ?? err;
      });
      if (this.fatal) throw this.fatal;
      // Nothing is left for the workers: ended now, their heaps go while the index and the snapshot are made, at
      // the end of the backup, where a first backup's memory peaks.
      const pool = this.pool;
      this.pool = undefined;
      this.closing = pool.close();
    }
  }

  /** Write one index file that lists the packs this run made durable (before any snapshot refers to them). */
  async writeIndex(): Promise<void> {
    if (this.written.length > 0) {
      const name = await writeIndexFile(this.vault.storage, this.vault.keys, this.written);
      // The index in memory is now what the vault's index files hold, this one included: the next command (a
      // restore, a check, the next backup) reads it from the local cache. Written while the snapshot is.
      const { indexCache } = this.vault;
      if (indexCache && this.index.files) this.caching = indexCache.write(this.vault.keys, this.index, [...this.index.files, name]).catch(() => undefined);
    }
  }
}

function findParent(snapshots: Array<{ id: string; snapshot: Snapshot }>, dir: string): { id: string; source: FolderSource } | undefined {
  for (let i = snapshots.length - 1; i >= 0; i--) {
    const s = snapshots[i]!;
    const src = s.snapshot.sources.find((x): x is FolderSource => x.kind === 'folder' && x.originalPath === dir);
    if (src) return { id: s.id, source: src };
  }
  return undefined;
}

/** The parent's chunk list, when the file looks untouched (size, mtime, inode) and its chunks are all indexed. */
function unchanged(prev: TreeEntry | undefined, f: WalkedFile, index: MasterIndex): string | undefined {
  if (!prev || prev.type !== 'file' || prev.content === undefined) return undefined;
  if (prev.size !== f.size || prev.mtimeMs !== f.mtimeMs) return undefined;
  if (prev.ino !== undefined && f.ino !== 0 && prev.ino !== f.ino) return undefined;
  const ids = decodeContent(prev.content);
  if (!ids.every((id) => index.has(id))) return undefined;
  return prev.content;
}

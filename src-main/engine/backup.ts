// Backup: databases and folders into a vault. Order of durability: packs, then the index that lists them, then
// the snapshot that references them. A run that dies anywhere leaves earlier snapshots untouched.
import * as os from 'node:os';
import * as path from 'node:path';
import { ChunkStore } from './chunk-store.js';
import { FastCdc, FixedCutter, gearTable, sqliteChunkSize, type Cutter } from './chunker/chunkers.js';
import { readChunks } from './chunker/read-chunks.js';
import { ClinicVaultError, DriveFullError, UsageError, formatBytes, isNoSpace } from './errors.js';
import { copySqlite } from './sources/sqlite.js';
import { DEFAULT_EXCLUDES, describeFsError, walkFolder, type WalkedFile } from './sources/folder.js';
import { VaultLock } from './vault/lock.js';
import { decodeContent, encodeContent, writeSnapshot, type AuditRecord, type FolderSource, type Snapshot, type SnapshotSource, type SqliteSource, type TreeEntry } from './vault/snapshot.js';
import type { Vault } from './vault/vault.js';
import type { MasterIndex } from './vault/index-file.js';

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
  folders?: string[];
  tags?: string[];
  excludes?: string[];
  tmpDir?: string;
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
  stats: ChunkStore['stats'];
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
  const sqlite = (opts.sqlite ?? []).map((p) => path.resolve(p));
  const folders = (opts.folders ?? []).map((p) => path.resolve(p));
  if (sqlite.length + folders.length === 0) throw new UsageError('Nothing to back up: give at least one --sqlite FILE or --folder DIR.');
  validateLabels([...sqlite, ...folders].map((p) => ({ label: sourceLabel(p), path: p })));
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
    const store = new ChunkStore(vault.storage, vault.keys, index, vault.config.packSize);
    store.adopt(index.recoveredPacks);
    const run = new BackupRun(vault, index, store, opts, started);
    try {
      const { sources, parentId } = await run.collect(sqlite, folders);
      opts.onProgress?.({ ...run.progress, phase: 'finishing' });
      await store.finish();
      const snapshot: Snapshot = {
        version: 1,
        time: started.toISOString(),
        host: opts.host ?? os.hostname(),
        appVersion: opts.appVersion,
        tags: [...new Set(opts.tags ?? [])],
        parent: parentId,
        sources,
        totals: {
          bytesRead: run.bytesRead,
          bytesAdded: store.stats.bytesStored,
          chunksAdded: store.stats.chunksNew,
          filesNew: run.filesNew,
          filesChanged: run.filesChanged,
          filesUnchanged: run.filesUnchanged,
          durationMs: Math.round(performance.now() - t0),
        },
        audit: opts.audit ?? [],
      };
      const snapshotId = await writeSnapshot(vault.storage, vault.keys, snapshot);
      return { snapshotId, snapshot, skipped: run.skipped, warnings: run.warnings, partial: run.skipped.length > 0 || run.warnings.length > 0, stats: store.stats };
    } catch (err) {
      if (isNoSpace(err)) throw await driveFull(vault, run, store, err);
      throw err;
    } finally {
      await run.cleanup();
    }
  } finally {
    await lock.release().catch(() => undefined);
  }
}

async function driveFull(vault: Vault, run: BackupRun, store: ChunkStore, cause: unknown): Promise<DriveFullError> {
  const free = (await vault.storage.freeBytes()) ?? 0;
  const remaining = Math.max(0, run.progress.bytesTotal - run.progress.bytesDone);
  const needed = store.unwrittenBytes + remaining;
  return new DriveFullError(
    `The backup drive is full (${formatBytes(free)} free at ${vault.location}). This backup had written ${formatBytes(store.stats.bytesStored)} ` +
      `and needed up to ${formatBytes(needed)} more. Free up space on the drive or use a larger one, then run the backup again. ` +
      'No new snapshot was recorded; earlier backups on the drive are intact.',
    { cause },
  );
}

class BackupRun {
  readonly progress: BackupProgress = { phase: 'preparing', filesDone: 0, filesTotal: 0, bytesDone: 0, bytesTotal: 0 };
  readonly skipped: BackupResult['skipped'] = [];
  readonly warnings: string[] = [];
  bytesRead = 0;
  filesNew = 0;
  filesChanged = 0;
  filesUnchanged = 0;
  private cleanups: Array<() => Promise<void>> = [];
  private readonly fileCutter: Cutter;
  private lastEmit = 0;
  private readonly excludes: string[];

  constructor(
    private readonly vault: Vault,
    private readonly index: MasterIndex,
    private readonly store: ChunkStore,
    private readonly opts: BackupOptions,
    private readonly started: Date,
  ) {
    this.excludes = opts.excludes ?? DEFAULT_EXCLUDES;
    const f = vault.config.chunking.files;
    this.fileCutter = new FastCdc(gearTable(vault.keys.id), f.min, f.avg, f.max);
  }

  private emit(force = false): void {
    const t = performance.now();
    if (!force && t - this.lastEmit < 100) return;
    this.lastEmit = t;
    this.opts.onProgress?.({ ...this.progress });
  }

  async cleanup(): Promise<void> {
    for (const c of this.cleanups) await c().catch(() => undefined);
    this.cleanups = [];
  }

  async collect(sqlite: string[], folders: string[]): Promise<{ sources: SnapshotSource[]; parentId: string | null }> {
    const tmpDir = this.opts.tmpDir ?? path.join(os.tmpdir(), 'clinicvault');
    // 1. Consistent database copies first, so they are as close to the start time as possible.
    const copies = [];
    for (const db of sqlite) {
      this.progress.source = sourceLabel(db);
      this.emit(true);
      const copy = await copySqlite(db, tmpDir);
      this.cleanups.push(copy.cleanup);
      if (copy.integrityCheck !== 'ok') {
        this.warnings.push(`The database ${db} failed SQLite's integrity check (${copy.integrityCheck.split('\n')[0]}). It was backed up as it is; have it checked.`);
      }
      copies.push({ db, copy });
      this.progress.filesTotal++;
      this.progress.bytesTotal += copy.size;
    }
    // 2. Walk folders and compare with the parent snapshot to know how much must be read.
    const { snapshots } = await this.vault.listSnapshots();
    let parentId: string | null = null;
    const walks = [];
    for (const dir of folders) {
      const walk = await walkFolder(dir, this.excludes).catch((err: unknown) => {
        throw new UsageError(`Cannot read the folder ${dir}: ${describeFsError(err)}.`);
      });
      if (walk.files.length === 0 && walk.skipped.some((s) => s.path === '.')) {
        throw new UsageError(`Cannot read the folder ${dir}: ${walk.skipped[0]!.reason}. Is the drive or share connected?`);
      }
      const parent = findParent(snapshots, dir);
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

    const sources: SnapshotSource[] = [];
    for (const { db, copy } of copies) {
      this.progress.source = sourceLabel(db);
      const cutter = new FixedCutter(sqliteChunkSize(copy.pageSize, this.vault.config.chunking.sqlite.minBytes));
      const ids: Buffer[] = [];
      const read = await readChunks(copy.copyPath, cutter, async (chunk) => {
        ids.push(await this.store.add(chunk));
        this.progress.bytesDone += chunk.length;
        this.emit();
      }, this.opts.signal);
      this.bytesRead += read;
      this.progress.filesDone++;
      await copy.cleanup();
      const label = sourceLabel(db);
      const src: SqliteSource = {
        kind: 'sqlite',
        label,
        originalPath: db,
        pageSize: copy.pageSize,
        size: copy.size,
        tables: copy.tables,
        integrityCheck: copy.integrityCheck,
        entries: [{ path: label, type: 'file', size: read, mode: 0o600, mtimeMs: this.started.getTime(), content: encodeContent(ids) }],
      };
      sources.push(src);
    }

    for (const { dir, walk, plan, prev } of walks) {
      const label = sourceLabel(dir);
      this.progress.source = label;
      const entries: TreeEntry[] = [];
      let fileCount = 0;
      let bytes = 0;
      for (const { f, reuse } of plan) {
        this.opts.signal?.throwIfAborted();
        if (f.type === 'dir') {
          entries.push({ path: f.rel, type: 'dir', size: 0, mode: f.mode, mtimeMs: f.mtimeMs });
          continue;
        }
        let content: string;
        if (reuse !== undefined) {
          content = reuse;
          this.filesUnchanged++;
        } else {
          try {
            content = await this.readFile(f);
          } catch (err) {
            if (isNoSpace(err) || err instanceof ClinicVaultError || (err as Error).name === 'AbortError') throw err;
            walk.skipped.push({ path: f.rel, reason: describeFsError(err) });
            this.progress.filesDone++;
            continue;
          }
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

  private async readFile(f: WalkedFile): Promise<string> {
    const ids: Buffer[] = [];
    let read = 0;
    await readChunks(f.abs, this.fileCutter, async (chunk) => {
      ids.push(await this.store.add(chunk));
      read += chunk.length;
      this.progress.bytesDone += chunk.length;
      this.emit();
    }, this.opts.signal);
    this.bytesRead += read;
    // The file changed size while we read it: keep what we read, it is self-consistent chunk by chunk.
    f.size = read;
    return encodeContent(ids);
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
  if (!ids.every((id) => index.has(id.toString('hex')))) return undefined;
  return prev.content;
}

// Erase (GDPR right to erasure): rewrite every snapshot without the files a pattern matches, then prune with
// every pack that holds an unreferenced byte repacked, so the erased content is gone from the drive, not just
// unlisted. Chunks another kept file still uses stay: they are that other file's content too.
//
// Each rewritten snapshot is written (durable) before the one it replaces is deleted, and records which one that
// was (`rewrittenFrom`), so an erase killed in between is finished by the next one instead of rewriting twice.
import picomatch from 'picomatch';
import { prune, type PruneResult } from './prune.js';
import { crashPoint } from './crash-point.js';
import { RefusedError, UsageError } from './errors.js';
import { VaultLock } from './vault/lock.js';
import { writeSnapshot, type FolderSource, type Snapshot, type TreeEntry } from './vault/snapshot.js';
import type { SnapshotListing, Vault } from './vault/vault.js';

export interface EraseMatch {
  snapshot: string;
  time: string;
  files: string[];
  bytes: number;
}

export interface EraseResult {
  dryRun: boolean;
  patterns: string[];
  matches: EraseMatch[];
  /** Old snapshot id -> the id of its rewrite. */
  rewritten: Record<string, string>;
  prune?: PruneResult;
}

/** Patterns are matched against `<source label>/<path>`; matching a folder erases everything in it. */
export function eraseMatcher(patterns: string[]): (fullPath: string) => boolean {
  if (patterns.length === 0) throw new UsageError('Give at least one --path to erase, e.g. --path "media/patients/P0042".');
  for (const p of patterns) {
    if (!p.trim() || /^[/*]+$/.test(p.trim()) || p.split('/').includes('..')) {
      throw new UsageError(`"${p}" is not a usable erase pattern. Give a path inside a backed-up folder, such as "media/patients/P0042".`);
    }
  }
  const isMatch = picomatch(patterns.map((p) => p.replace(/\/+$/, '')), { dot: true, nocase: process.platform !== 'linux' });
  return (fullPath: string): boolean => {
    // The path itself or any folder above it.
    const parts = fullPath.split('/');
    for (let i = parts.length; i > 0; i--) if (isMatch(parts.slice(0, i).join('/'))) return true;
    return false;
  };
}

export async function erase(vault: Vault, patterns: string[], opts: { dryRun?: boolean; log?: (m: string) => void } = {}): Promise<EraseResult> {
  const matches = eraseMatcher(patterns);
  // Checked before the backups are rewritten: the prune that ends an erase writes packs with them.
  if (!opts.dryRun) vault.checkWriterConfig();
  const lock = opts.dryRun ? undefined : await VaultLock.acquire(vault.storage, 'erase', opts.log);
  try {
    const { snapshots, damaged, superseded } = await vault.listSnapshots();
    if (damaged.length > 0) {
      throw new RefusedError(
        `Erase changes nothing while ${damaged.length} backup record(s) cannot be read (${damaged.map((d) => d.id.slice(0, 8)).join(', ')}): ` +
          'the files could be in them. Run "clinicvault verify" for details.',
      );
    }
    // Finish an erase that was killed between writing a rewrite and deleting the snapshot it replaces.
    if (!opts.dryRun) for (const id of superseded) await vault.storage.remove('snapshots', id);

    for (const s of snapshots) {
      for (const src of s.snapshot.sources) {
        if (src.kind === 'folder' && matches(src.label)) {
          throw new UsageError(
            `The pattern matches the whole folder "${src.label}" of backup ${s.id.slice(0, 8)}; erase is for files or folders inside it ` +
              `(e.g. "${src.label}/patients/P0042"). Nothing was changed.`,
          );
        }
        if (src.kind !== 'folder' && matches(src.label)) {
          throw new UsageError(
            `"${src.label}" is a database in backup ${s.id.slice(0, 8)}; erase removes files, not database rows. ` +
              'Delete the person\'s records in the clinic software; the following backups will not hold them, and older backups age out under the retention policy.',
          );
        }
      }
    }
    const found: EraseMatch[] = [];
    const rewrites: Array<{ from: SnapshotListing; snap: Snapshot }> = [];
    for (const s of snapshots) {
      const m: EraseMatch = { snapshot: s.id, time: s.snapshot.time, files: [], bytes: 0 };
      const sources = s.snapshot.sources.map((src) => {
        if (src.kind !== 'folder') return src;
        const keep: TreeEntry[] = [];
        for (const e of src.entries) {
          if (matches(`${src.label}/${e.path}`)) {
            if (e.type === 'file') {
              m.files.push(`${src.label}/${e.path}`);
              m.bytes += e.size;
            }
          } else keep.push(e);
        }
        // What the backup skipped (a link, an unreadable file) is named in it too.
        const skipped = src.skipped.filter((x) => !matches(`${src.label}/${x.path}`));
        if (keep.length === src.entries.length && skipped.length === src.skipped.length) return src;
        const files = keep.filter((e) => e.type === 'file');
        const out: FolderSource = { ...src, entries: keep, skipped, fileCount: files.length, bytes: files.reduce((a, e) => a + e.size, 0) };
        return out;
      });
      if (m.files.length === 0 && sources.every((src, i) => src === s.snapshot.sources[i])) continue;
      found.push(m);
      rewrites.push({ from: s, snap: { ...s.snapshot, sources, rewrittenFrom: s.id, erasures: [...(s.snapshot.erasures ?? []), { time: new Date().toISOString(), files: m.files.length, bytes: m.bytes }] } });
    }
    const result: EraseResult = { dryRun: !!opts.dryRun, patterns, matches: found, rewritten: {} };
    if (opts.dryRun) return result;
    for (const { from, snap } of rewrites) {
      const id = await writeSnapshot(vault.storage, vault.keys, snap);
      crashPoint('erase:snapshot-written');
      await vault.storage.remove('snapshots', from.id);
      crashPoint('erase:snapshot-removed');
      result.rewritten[from.id] = id;
    }
    // Every pack with any byte no snapshot needs is rewritten, and unlisted packs go at once (we hold the lock, so
    // no backup is writing them): nothing of the erased files stays on the drive.
    result.prune = await prune(vault, { lock, repackAll: true, orphanGraceMs: 0, log: opts.log });
    // This computer's caches of the vault (index-cache.ts, snapshot-cache.ts) are made again now rather than by the
    // next backup: sealed as they are, they would still hold the erased chunks' ids and the old backups' listings.
    await vault.loadIndex().catch(() => undefined);
    await vault.listSnapshots({ entries: false, cached: true }).catch(() => undefined);
    return result;
  } finally {
    await lock?.release().catch(() => undefined);
  }
}

// Operations: the engine calls wrapped with the bookkeeping every front end needs (inventory rows, runs,
// audit entries). The CLI and the Electron main process both call these; neither talks to the engine directly.
import { backup, type BackupOptions, type BackupResult } from '../engine/backup.js';
import { ClinicVaultError } from '../engine/errors.js';
import { fileCount, type Inventory } from '../engine/inventory/inventory.js';
import { restore, type RestoreOptions, type RestoreResult } from '../engine/restore.js';
import { restorePostgres, type PgRestoreOptions, type PgRestoreResult } from '../engine/restore-postgres.js';
import { verify, type VerifyOptions, type VerifyReport } from '../engine/verify.js';
import { forget, type ForgetResult } from '../engine/forget.js';
import { prune, type PruneOptions, type PruneResult } from '../engine/prune.js';
import { erase, type EraseResult } from '../engine/erase.js';
import { exportSnapshot, type ExportOptions, type ExportResult } from '../engine/export/export.js';
import { addTag } from '../engine/tag.js';
import { testRestore, type TestRestoreOptions, type TestRestoreReport } from '../engine/test-restore.js';
import type { RetentionPolicy } from '../engine/retention.js';
import type { SnapshotListing, Vault } from '../engine/vault/vault.js';

async function tracked<T>(inv: Inventory, kind: Parameters<Inventory['startRun']>[0], vaultId: string | null, fn: (runId: number) => Promise<T>): Promise<T> {
  const runId = inv.startRun(kind, vaultId);
  try {
    return await fn(runId);
  } catch (err) {
    inv.endRun(runId, 'failed', { error: err instanceof ClinicVaultError ? err.message : String((err as Error).message ?? err) });
    inv.audit(`${kind}.failed`, vaultId, { error: err instanceof ClinicVaultError ? err.message : 'unexpected error' });
    throw err;
  }
}

export async function runBackup(inv: Inventory, vault: Vault, opts: Omit<BackupOptions, 'audit'>): Promise<BackupResult> {
  inv.upsertVault(vault.id, vault.location, vault.config.created);
  return tracked(inv, 'backup', vault.id, async (runId) => {
    // The snapshot carries the audit history up to and including this backup's start.
    inv.audit('backup.start', vault.id, { sources: [...(opts.sqlite ?? []), ...(opts.folders ?? []), ...(opts.postgres ?? [])].length });
    const result = await backup(vault, { ...opts, audit: inv.auditLog() });
    const files = result.snapshot.sources.reduce((a, s) => a + s.entries.filter((e) => e.type === 'file').length, 0);
    inv.recordSnapshot(vault.id, result.snapshotId, result.snapshot);
    inv.endRun(runId, result.partial ? 'partial' : 'ok', { bytes: result.snapshot.totals.bytesAdded, files, snapshotId: result.snapshotId });
    inv.audit('backup', vault.id, {
      snapshot: result.snapshotId,
      files,
      bytesAdded: result.snapshot.totals.bytesAdded,
      skipped: result.skipped.length,
      warnings: result.warnings.length,
    });
    return result;
  });
}

export async function runRestore(inv: Inventory, vault: Vault, snap: SnapshotListing, opts: RestoreOptions): Promise<RestoreResult> {
  inv.upsertVault(vault.id, vault.location, vault.config.created);
  return tracked(inv, 'restore', vault.id, async (runId) => {
    const result = await restore(vault, snap.snapshot, opts);
    const ok = result.failed.length === 0 && result.databases.every((d) => d.ok);
    inv.endRun(runId, ok ? 'ok' : 'partial', { bytes: result.bytes, files: result.files, snapshotId: snap.id });
    inv.audit('restore', vault.id, {
      snapshot: snap.id,
      target: result.target,
      include: opts.include ?? [],
      files: result.files,
      failed: result.failed.length,
      databasesOk: result.databases.every((d) => d.ok),
    });
    return result;
  });
}

export async function runRestorePostgres(inv: Inventory, vault: Vault, snap: SnapshotListing, opts: PgRestoreOptions): Promise<PgRestoreResult> {
  inv.upsertVault(vault.id, vault.location, vault.config.created);
  return tracked(inv, 'restore', vault.id, async (runId) => {
    const result = await restorePostgres(vault, snap.snapshot, opts);
    inv.endRun(runId, 'ok', { snapshotId: snap.id });
    inv.audit('restore.postgres', vault.id, {
      snapshot: snap.id,
      server: opts.target,
      database: result.database,
      replaced: result.replaced,
      tables: opts.tables ?? 'all',
      rowCountsMatch: result.ok,
    });
    return result;
  });
}

export async function runForget(inv: Inventory, vault: Vault, policy: RetentionPolicy, opts: { dryRun?: boolean; timeZone?: string; prune?: boolean }): Promise<ForgetResult> {
  inv.upsertVault(vault.id, vault.location, vault.config.created);
  if (opts.dryRun) return forget(vault, policy, opts);
  return tracked(inv, 'forget', vault.id, async (runId) => {
    const result = await forget(vault, policy, opts);
    inv.markForgotten(result.forgotten);
    inv.endRun(runId, 'ok', { bytes: result.prune ? result.prune.bytesBefore - result.prune.bytesAfter : undefined });
    inv.audit('forget', vault.id, { policy, kept: result.decisions.filter((d) => d.keep).length, forgotten: result.forgotten, prune: result.prune && pruneFacts(result.prune) });
    return result;
  });
}

function pruneFacts(r: PruneResult): Record<string, number> {
  return { packsDeleted: r.packsDeleted, packsRepacked: r.packsRepacked, packsWritten: r.packsWritten, bytesFreed: r.bytesBefore - r.bytesAfter };
}

export async function runPrune(inv: Inventory, vault: Vault, opts: PruneOptions): Promise<PruneResult> {
  inv.upsertVault(vault.id, vault.location, vault.config.created);
  if (opts.dryRun) return prune(vault, opts);
  return tracked(inv, 'prune', vault.id, async (runId) => {
    const result = await prune(vault, opts);
    inv.endRun(runId, 'ok', { bytes: result.bytesBefore - result.bytesAfter });
    inv.audit('prune', vault.id, pruneFacts(result));
    return result;
  });
}

/** Erase on request: the audit entry says who erased which pattern, when, and how much; never file names or content. */
export async function runErase(inv: Inventory, vault: Vault, patterns: string[], opts: { dryRun?: boolean; log?: (m: string) => void }): Promise<EraseResult> {
  inv.upsertVault(vault.id, vault.location, vault.config.created);
  if (opts.dryRun) return erase(vault, patterns, opts);
  return tracked(inv, 'erase', vault.id, async (runId) => {
    const result = await erase(vault, patterns, opts);
    inv.markForgotten(Object.keys(result.rewritten));
    for (const id of Object.values(result.rewritten)) inv.recordSnapshot(vault.id, id, await vault.readSnapshot(id));
    const files = new Set(result.matches.flatMap((m) => m.files)).size;
    inv.endRun(runId, 'ok', { files, bytes: result.prune ? result.prune.bytesBefore - result.prune.bytesAfter : undefined });
    inv.audit('erase', vault.id, {
      patterns,
      files,
      snapshotsRewritten: Object.keys(result.rewritten).length,
      prune: result.prune && pruneFacts(result.prune),
    });
    return result;
  });
}

/** A test restore, recorded against the snapshot it proved (or failed to): the app's "restorable, proved on" badge. */
export async function runTestRestore(inv: Inventory, vault: Vault, snap: SnapshotListing, opts: TestRestoreOptions): Promise<TestRestoreReport> {
  inv.upsertVault(vault.id, vault.location, vault.config.created);
  return tracked(inv, 'test-restore', vault.id, async (runId) => {
    const report = await testRestore(vault, snap, opts);
    const problems = [
      ...report.databases.filter((d) => !d.ok).map((d) => `${d.label}: ${d.problem ?? 'failed'}`),
      ...report.media.failed.map((f) => `${f.path}: ${f.reason}`),
    ];
    inv.recordVerification(
      vault.id,
      'test-restore',
      report.ok,
      {
        databases: report.databases.map((d) => ({ kind: d.kind, label: d.label, ok: d.ok, tables: Object.keys(d.tables).length, durationMs: d.durationMs })),
        media: { sampled: report.media.sampled, of: report.media.of, ok: report.media.ok, matchesOriginal: report.media.matchesOriginal, durationMs: report.media.durationMs },
        rto: report.rto,
        problems,
      },
      snap.id,
    );
    inv.endRun(runId, report.ok ? 'ok' : 'failed', { snapshotId: snap.id, files: report.media.sampled, error: report.ok ? undefined : problems.join('; ') });
    inv.audit('test-restore', vault.id, { snapshot: snap.id, ok: report.ok, durationMs: report.durationMs, estimatedFullMs: report.rto.estimatedFullMs, problems: problems.length });
    return report;
  });
}

/** Export a snapshot as FILE.tar.age. A migration bundle first tags the snapshot pre-migration, so the retention
 * policy keeps it for as long as the rollback plan may need it. */
export async function runExport(inv: Inventory, vault: Vault, snap: SnapshotListing, opts: ExportOptions): Promise<ExportResult & { tagged: boolean }> {
  inv.upsertVault(vault.id, vault.location, vault.config.created);
  return tracked(inv, 'export', vault.id, async (runId) => {
    let target = snap;
    if (opts.migration && !snap.snapshot.tags.includes('pre-migration')) {
      target = await addTag(vault, snap, 'pre-migration', opts.log);
      inv.markForgotten([snap.id]);
      inv.recordSnapshot(vault.id, target.id, target.snapshot);
      inv.audit('tag', vault.id, { snapshot: target.id, replaces: snap.id, tag: 'pre-migration' });
    }
    const result = await exportSnapshot(vault, target, { ...opts, vaultLocation: vault.location });
    inv.endRun(runId, 'ok', { snapshotId: target.id, files: result.files, bytes: result.archiveBytes });
    inv.audit('export', vault.id, { snapshot: target.id, out: result.out, files: result.files, bytes: result.archiveBytes, migration: opts.migration ?? null });
    return { ...result, tagged: target !== snap };
  });
}

/** verify --read-data-subset P%: the vault's packs fall into round(100/P) groups; each run reads the group after
 * the one the inventory says was read last, so a cycle of runs reads everything. */
export function subsetFor(inv: Inventory, vaultId: string, percent: number): { group: number; of: number } {
  const of = Math.max(1, Math.round(100 / percent));
  const done = inv.countVerifications(vaultId, `read-data-subset-1/${of}`);
  return { group: done % of, of };
}

export async function runVerify(inv: Inventory, vault: Vault, opts: VerifyOptions & { subsetPercent?: number }): Promise<VerifyReport> {
  inv.upsertVault(vault.id, vault.location, vault.config.created);
  return tracked(inv, 'verify', vault.id, async (runId) => {
    const subset = opts.subsetPercent ? subsetFor(inv, vault.id, opts.subsetPercent) : undefined;
    const report = await verify(vault, { ...opts, subset });
    const kind = subset ? `read-data-subset-1/${subset.of}` : opts.readData ? 'read-data' : 'structure';
    inv.recordVerification(vault.id, kind, report.ok, { problems: report.problems.map((p) => p.message), packs: report.packs, snapshots: report.snapshots, subset: report.subset });
    inv.endRun(runId, report.ok ? 'ok' : 'failed', { bytes: report.bytesRead, error: report.ok ? undefined : `${report.problems.length} problem(s)` });
    inv.audit('verify', vault.id, { kind, ok: report.ok, problems: report.problems.length });
    return report;
  });
}

/** Rebuild the inventory's view of a vault from the vault alone (new PC). */
export async function rebuildInventory(inv: Inventory, vault: Vault): Promise<{ snapshots: number; auditImported: number; damaged: number }> {
  inv.upsertVault(vault.id, vault.location, vault.config.created);
  // Each backup is read whole once, one at a time, and only its file count kept (a month of backups kept whole held
  // ~200 MB); the newest comes back whole (latestFull) for its audit history, the longest.
  const files = new Map<string, number>();
  const { snapshots, damaged, latestFull } = await vault.listSnapshots({ entries: false, each: (s) => files.set(s.id, fileCount(s.snapshot)) });
  for (const s of snapshots) inv.recordSnapshot(vault.id, s.id, s.snapshot, files.get(s.id));
  inv.markMissingSnapshots(vault.id, snapshots.map((s) => s.id));
  const last = snapshots[snapshots.length - 1];
  const newest = latestFull?.id === last?.id ? latestFull : last && { id: last.id, snapshot: await vault.readSnapshot(last.id) };
  let auditImported = 0;
  if (newest && newest.snapshot.audit.length > 0) auditImported = inv.importAudit(newest.snapshot.audit);
  inv.audit('inventory.rebuild', vault.id, { snapshots: snapshots.length, auditImported, damaged: damaged.length });
  return { snapshots: snapshots.length, auditImported, damaged: damaged.length };
}

// The clinicvault command. Parses arguments (commander), gets secrets safely, calls the operations layer and
// prints either plain sentences for a person or JSON for a program. Exit codes: see docs/CLI.md.
import { Command, CommanderError } from 'commander';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as os from 'node:os';
import { fileURLToPath } from 'node:url';
import { ClinicVaultError, ExitCode, UsageError, formatBytes } from '../engine/errors.js';
import type { PruneResult } from '../engine/prune.js';
import { spaceReport } from '../engine/space.js';
import { parsePostgresUrl } from '../engine/sources/postgres.js';
import { startSqliteCopy, type EarlySqliteCopy } from '../engine/sources/sqlite.js';
import { Inventory, appDataDir } from '../engine/inventory/inventory.js';
import { Vault } from '../engine/vault/vault.js';
import { checkNewPassphrase, makePassphraseSlot, makeRecoverySlot, readSlots, unlock, writeSlot, generateRecoveryKey } from '../engine/vault/keys.js';
import { VaultLock } from '../engine/vault/lock.js';
import { runBackup, runForget, runPrune, runErase, runTestRestore, runExport, runRestore, runRestorePostgres, runVerify, rebuildInventory } from '../services/operations.js';
import { DEFAULT_POLICY, validateStoredPolicy, type RetentionPolicy } from '../engine/retention.js';
import { newPassphrase, openingSecret, type SecretFlags } from './secrets.js';
import { progressBar } from './progress.js';
import type { Snapshot } from '../engine/vault/snapshot.js';

export function appVersion(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const p = path.join(dir, 'package.json');
    if (fs.existsSync(p)) return (JSON.parse(fs.readFileSync(p, 'utf8')) as { version: string }).version;
    dir = path.dirname(dir);
  }
  return '0.0.0';
}

const out = (s: string): void => void process.stdout.write(s + '\n');
const err = (s: string): void => void process.stderr.write(s + '\n');
const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

interface VaultFlags extends SecretFlags {
  vault: string;
  json?: boolean;
}

async function openVault(flags: VaultFlags): Promise<Vault> {
  await Vault.readConfig(flags.vault); // "no vault here" before asking for a passphrase
  return Vault.open(flags.vault, await openingSecret(flags), { cacheDir: cacheDir() });
}

/** Where this computer keeps its local caches of vaults' indexes (index-cache.ts). */
function cacheDir(): string {
  return path.join(appDataDir(), 'cache');
}

function withInventory<T>(fn: (inv: Inventory) => Promise<T>): Promise<T> {
  const inv = Inventory.openDefault();
  return fn(inv).finally(() => inv.close());
}

function secretOptions(cmd: Command): Command {
  return cmd
    .option('--passphrase-file <file>', 'read the passphrase from this file')
    .option('--recovery-key-file <file>', 'open the vault with the recovery key in this file');
}

function testRestoreSummary(row: { time: string; snapshot_id: string; ok: number; details: string } | undefined): { time: string; snapshot: string; ok: boolean; estimatedFullMs: number } | null {
  if (!row) return null;
  const details = JSON.parse(row.details) as { rto?: { estimatedFullMs?: number } };
  return { time: row.time, snapshot: row.snapshot_id, ok: row.ok === 1, estimatedFullMs: details.rto?.estimatedFullMs ?? 0 };
}

interface PolicyFlags {
  keepLast?: number;
  keepHourly?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
  keepYearly?: number;
  keepWithin?: string;
  keepTag: string[];
  timeZone?: string;
}

function describePolicy(p: RetentionPolicy & { timeZone?: string }): string {
  const parts: string[] = [];
  if (p.last) parts.push(`the last ${p.last}`);
  for (const k of ['hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const) if (p[k]) parts.push(`${p[k]} ${k}`);
  if (p.within) parts.push(`everything within ${p.within} of the newest`);
  if (p.keepTags?.length) parts.push(`anything tagged ${p.keepTags.join(' or ')}`);
  return parts.join(', ') + (p.timeZone ? ` (days counted in ${p.timeZone})` : '');
}

function describePrune(r: PruneResult): string {
  const freed = formatBytes(r.bytesBefore - r.bytesAfter);
  const what = `${r.packsDeleted} unused pack(s) ${r.dryRun ? 'to delete' : 'deleted'}, ${r.packsRepacked} mostly-unused pack(s) ${r.dryRun ? 'to repack' : `repacked into ${r.packsWritten}`}`;
  const left = r.unusedKept > 0 ? `; ${formatBytes(r.unusedKept)} unused stays in packs that are still mostly needed` : '';
  return `${r.dryRun ? 'Prune (dry run, nothing changed)' : 'Pruned'}: ${what}; ${freed} ${r.dryRun ? 'would be freed' : 'freed'} (vault data ${formatBytes(r.bytesBefore)} -> ${formatBytes(r.bytesAfter)})${left}.`;
}

/** `entryCounts`: each source's number of entries, when `s` is a listing without its file lists. */
function snapshotSummary(id: string, s: Snapshot, entryCounts?: number[]): Record<string, unknown> {
  return {
    id,
    shortId: id.slice(0, 8),
    time: s.time,
    host: s.host,
    appVersion: s.appVersion,
    tags: s.tags,
    parent: s.parent,
    sources: s.sources.map(({ entries, ...meta }, i) => ({ ...meta, entries: entryCounts?.[i] ?? entries.length })),
    totals: s.totals,
  };
}

export function buildProgram(): Command {
  const program = new Command('clinicvault')
    .description('Encrypted, deduplicated, verified backups of a clinic database and media folder.')
    .version(appVersion())
    .showHelpAfterError()
    .exitOverride();

  program
    .command('init')
    .description('create a new vault in an empty folder; prints the recovery key once')
    .requiredOption('--vault <dir>', 'vault folder (e.g. on the backup drive)')
    .option('--passphrase-file <file>', 'read the new passphrase from this file (else CLINICVAULT_PASSPHRASE or a prompt)')
    .option('--json', 'machine-readable output')
    .action(async (o: VaultFlags) => {
    // Vault.init checks the passphrase's length before touching the folder.
    const pass = await newPassphrase(o.passphraseFile, 'CLINICVAULT_PASSPHRASE');
    const { vault, recoveryKey } = await Vault.init(o.vault, pass);
    await withInventory(async (inv) => {
      inv.upsertVault(vault.id, vault.location, vault.config.created);
      inv.audit('vault.init', vault.id, { location: vault.location });
    });
    if (o.json) {
      out(JSON.stringify({ vaultId: vault.id, location: vault.location, recoveryKey }));
      return;
    }
    out(`Created vault ${vault.id} at ${vault.location}.`);
    out('');
    out('RECOVERY KEY (shown only this once):');
    out('');
    out(`    ${recoveryKey}`);
    out('');
    out('Print it or write it down and keep it somewhere safe, away from this computer and the backup drive.');
    out('With the drive and this key (or the passphrase) the clinic can be restored on any new PC.');
  });

  secretOptions(
    program
      .command('backup')
      .description('back up SQLite and PostgreSQL databases and folders into the vault')
      .requiredOption('--vault <dir>', 'vault folder')
      .option('--sqlite <file>', 'SQLite database to back up (repeatable)', collect, [])
      .option('--postgres <url>', 'PostgreSQL database, postgres://user@host:port/db without password; the password comes from PGPASSWORD or .pgpass (repeatable)', collect, [])
      .option('--pg-role-passwords', 'also save role passwords with the PostgreSQL roles (needs a superuser)')
      .option('--folder <dir>', 'folder to back up, e.g. the media root (repeatable)', collect, [])
      .option('--label <name>', 'a name for this backup, stored as a tag (e.g. pre-migration)')
      .option('--tag <tag>', 'tag for this backup (repeatable)', collect, [])
      .option('--exclude <pattern>', 'exclude files matching this pattern (repeatable; replaces the defaults)', collect, [])
      .option('--json', 'machine-readable output'),
  ).action(async (o: VaultFlags & { sqlite: string[]; postgres: string[]; pgRolePasswords?: boolean; folder: string[]; label?: string; tag: string[]; exclude: string[] }) => {
    const tags = [...o.tag, ...(o.label ? [o.label] : [])];
    for (const t of tags) if (!/^[\w.:-]{1,64}$/.test(t)) throw new UsageError(`Tag "${t}" may contain only letters, digits and . _ : - (at most 64).`);
    const config = await Vault.readConfig(o.vault);
    const secret = await openingSecret(o);
    const tmpDir = path.join(appDataDir(), 'tmp');
    const bar = progressBar(!o.json, 'Backing up');
    const result = await withInventory(async (inv) => {
      // The inventory's first write of a run creates its WAL file, which SQLite makes durable. Done before the
      // database copies leave ~200 MB of unwritten pages on the disk, that fsync takes ~1 ms; after them it waited
      // ~0.2 s for them on ext4, with both cores idle (decision 0016).
      inv.upsertVault(config.id, path.resolve(o.vault), config.created);
      // The databases' consistent copies are made while the passphrase unlocks the vault (scrypt, ~0.25 s).
      const sqliteCopies: EarlySqliteCopy[] = [];
      let vault: Vault;
      try {
        for (const f of o.sqlite) sqliteCopies.push(await startSqliteCopy(path.resolve(f), tmpDir));
        const opening = Vault.open(o.vault, secret, { cacheDir: cacheDir() });
        opening.catch(() => undefined);
        for (const c of sqliteCopies) await c.checkWhile(opening);
        vault = await opening;
      } catch (e) {
        for (const c of sqliteCopies) await c.cleanup().catch(() => undefined);
        throw e;
      }
      return runBackup(inv, vault, {
        sqlite: o.sqlite,
        postgres: o.postgres,
        pgRolePasswords: !!o.pgRolePasswords,
        folders: o.folder,
        tags,
        excludes: o.exclude.length ? o.exclude : undefined,
        tmpDir,
        sqliteCopies,
        appVersion: appVersion(),
        log: (m) => err(m),
        onProgress: (p) => bar.update(p.bytesDone, p.bytesTotal, { done: p.filesDone, total: p.filesTotal }),
      });
    }).finally(() => bar.stop());
    const t = result.snapshot.totals;
    if (o.json) {
      out(JSON.stringify({ ...snapshotSummary(result.snapshotId, result.snapshot), skipped: result.skipped, warnings: result.warnings, stats: result.stats }));
    } else {
      out(`Backup ${result.snapshotId.slice(0, 8)} saved: ${t.filesNew} new, ${t.filesChanged} changed, ${t.filesUnchanged} unchanged file(s); ` +
          `read ${formatBytes(t.bytesRead)}, added ${formatBytes(t.bytesAdded)} to the vault in ${(t.durationMs / 1000).toFixed(1)} s.`);
      for (const s of result.skipped) err(`Not backed up: ${s.source}/${s.path} (${s.reason})`);
      for (const w of result.warnings) err(`Warning: ${w}`);
    }
    if (result.partial) process.exitCode = ExitCode.partial;
  });

  secretOptions(
    program.command('snapshots').description('list the backups in the vault').requiredOption('--vault <dir>', 'vault folder').option('--json', 'machine-readable output'),
  ).action(async (o: VaultFlags) => {
    const vault = await openVault(o);
    // Every backup is read, one at a time (so a damaged one is reported), and its file lists are counted, not kept:
    // kept, 23 backups of the bench data held ~200 MB.
    const entryCounts = new Map<string, number[]>();
    const { snapshots, damaged } = await vault.listSnapshots({ entries: false, each: (s) => entryCounts.set(s.id, s.snapshot.sources.map((src) => src.entries.length)) });
    // What the inventory knows about each backup's proof: its latest test restore.
    const proofs = await withInventory(async (inv) => new Map(inv.snapshotProofs(vault.id).filter((p) => p.kind === 'test-restore').map((p) => [p.snapshot_id, p])));
    if (o.json) {
      out(JSON.stringify(snapshots.map((s) => {
        const p = proofs.get(s.id);
        return { ...snapshotSummary(s.id, s.snapshot, entryCounts.get(s.id)), lastTestRestore: p ? { time: p.time, ok: p.ok === 1 } : null };
      })));
    } else if (snapshots.length === 0) {
      out('No backups in this vault yet.');
    } else {
      for (const s of snapshots) {
        const srcs = s.snapshot.sources.map((x) => (x.kind === 'folder' ? `${x.label} (${x.fileCount} files)` : `${x.label} (${x.kind === 'sqlite' ? 'SQLite' : 'PostgreSQL'} database)`)).join(', ');
        const p = proofs.get(s.id);
        const proof = p ? (p.ok ? `  restorable, proved on ${p.time.slice(0, 10)}` : `  test restore FAILED on ${p.time.slice(0, 10)}`) : '';
        out(`${s.id.slice(0, 8)}  ${s.snapshot.time}  ${s.snapshot.host}  ${srcs}${s.snapshot.tags.length ? '  [' + s.snapshot.tags.join(', ') + ']' : ''}${proof}`);
      }
    }
    for (const d of damaged) err(`Damaged: ${d.message}`);
    if (damaged.length) process.exitCode = ExitCode.damage;
  });

  secretOptions(
    program
      .command('restore')
      .description('restore a backup (or some paths of it) into a folder, or its PostgreSQL database into a server')
      .requiredOption('--vault <dir>', 'vault folder')
      .option('--snapshot <id>', 'snapshot id (or a unique prefix), or "latest"', 'latest')
      .option('--target <dir>', 'folder to restore into (best: a new, empty folder)')
      .option('--postgres-target <url>', 'PostgreSQL server to restore the database into: postgres://user@host:port/<live database name>')
      .option('--as-new-database <name>', 'name of the new database (default <name>_restored_<time>)')
      .option('--replace', 'after the new database is checked, swap it in for the live one (kept as <name>_before_restore_<time>)')
      .option('--table <name>', 'restore only this table (schema.table or table; repeatable) into a scratch database', collect, [])
      .option('--source <name>', 'which database of the backup, when it holds several')
      .option('--include <path>', 'restore only this path, e.g. media/patients/123 (repeatable)', collect, [])
      .option('--overwrite', 'replace files that already exist in the target')
      .option('--json', 'machine-readable output'),
  ).action(async (o: VaultFlags & { snapshot: string; target?: string; include: string[]; overwrite?: boolean; postgresTarget?: string; asNewDatabase?: string; replace?: boolean; table: string[]; source?: string }) => {
    if (!o.target && !o.postgresTarget) throw new UsageError('Say where to restore: --target DIR for files, or --postgres-target URL for a PostgreSQL database.');
    if (o.target && o.postgresTarget) throw new UsageError('Give either --target or --postgres-target, not both.');
    const vault = await openVault(o);
    const snap = await vault.resolveSnapshot(o.snapshot);
    if (o.postgresTarget) {
      const r = await withInventory((inv) =>
        runRestorePostgres(inv, vault, snap, {
          target: o.postgresTarget!,
          asNewDatabase: o.asNewDatabase,
          replace: !!o.replace,
          tables: o.table.length ? o.table : undefined,
          source: o.source,
          tmpDir: path.join(appDataDir(), 'tmp'),
          log: (m) => {
            if (!o.json) err(m);
          },
        }),
      );
      if (o.json) {
        out(JSON.stringify({ snapshot: snap.id, ...r }));
      } else {
        const n = Object.keys(r.tables).length;
        out(`Restored backup ${snap.id.slice(0, 8)} (${snap.snapshot.time}) into the database "${r.database}": ${n} table(s), every row count matches the backup.`);
        if (r.replaced?.keptAs) out(`The previous database is kept as "${r.replaced.keptAs}"; remove it once the clinic has checked the restored data.`);
        for (const w of r.warnings) err(`Warning: ${w}`);
      }
      return;
    }
    const target = o.target!;
    const bar = progressBar(!o.json, 'Restoring');
    const result = await withInventory((inv) =>
      runRestore(inv, vault, snap, {
        target,
        include: o.include,
        overwrite: !!o.overwrite,
        onProgress: (p) => bar.update(p.bytesDone, p.bytesTotal, { done: p.filesDone, total: p.filesTotal }),
      }),
    ).finally(() => bar.stop());
    const ok = result.failed.length === 0 && result.databases.every((d) => d.ok);
    if (o.json) {
      out(JSON.stringify({ snapshot: snap.id, ok, ...result }));
    } else {
      out(`Restored ${result.files} file(s), ${formatBytes(result.bytes)}, from backup ${snap.id.slice(0, 8)} (${snap.snapshot.time}) into ${result.target}.`);
      for (const d of result.databases) {
        out(d.ok ? `Database ${d.label}: ${d.checked === 'full' ? 'full' : 'quick'} integrity check ok, row counts match the backup.` : `Database ${d.label}: CHECK FAILED (integrity: ${d.integrityCheck}; counts expected ${JSON.stringify(d.expected)}, found ${JSON.stringify(d.actual)}).`);
      }
      for (const f of result.failed) err(`Could not restore ${f.path}: ${f.reason}`);
    }
    if (!ok) process.exitCode = ExitCode.damage;
  });

  const count = (v: string): number => {
    if (!/^\d+$/.test(v)) throw new UsageError(`"${v}" is not a whole number.`);
    return Number(v);
  };
  const policyFlags = (cmd: Command): Command =>
    cmd
      .option('--keep-last <n>', 'keep the n most recent backups', count)
      .option('--keep-hourly <n>', 'keep the newest backup of each of the last n hours that have one', count)
      .option('--keep-daily <n>', 'keep the newest backup of each of the last n days that have one', count)
      .option('--keep-weekly <n>', 'the same per ISO week', count)
      .option('--keep-monthly <n>', 'the same per month', count)
      .option('--keep-yearly <n>', 'the same per year', count)
      .option('--keep-within <duration>', 'keep everything within this long of the newest backup, e.g. 30d, 6m, 1y')
      .option('--keep-tag <tag>', 'never forget backups with this tag (repeatable; pre-migration and pre-restore always)', collect, [])
      .option('--time-zone <iana>', "time zone whose days, weeks and months count (default: this computer's)");
  /** The policy the flags give, or undefined when they give no rule. */
  const policyFrom = (o: PolicyFlags): RetentionPolicy | undefined => {
    const rules = { last: o.keepLast, hourly: o.keepHourly, daily: o.keepDaily, weekly: o.keepWeekly, monthly: o.keepMonthly, yearly: o.keepYearly, within: o.keepWithin };
    const given = Object.fromEntries(Object.entries(rules).filter(([, v]) => v !== undefined)) as RetentionPolicy;
    if (Object.keys(given).length === 0) return undefined;
    const policy: RetentionPolicy = { ...given, keepTags: [...new Set([...(DEFAULT_POLICY.keepTags ?? []), ...o.keepTag])] };
    checkPolicy(policy, o.timeZone);
    return policy;
  };
  const checkPolicy = (policy: RetentionPolicy, timeZone?: string): void => {
    try {
      validateStoredPolicy({ ...policy, timeZone });
    } catch (e) {
      throw new UsageError(`Cannot use this retention policy: ${(e as Error).message}.`);
    }
  };

  secretOptions(
    policyFlags(
      program
        .command('policy')
        .description("show or set this vault's own retention policy (each drive can keep its own; forget uses it)")
        .requiredOption('--vault <dir>', 'vault folder'),
    )
      .option('--clear', 'remove the vault\'s policy (forget then uses the default: 7 daily, 4 weekly, 12 monthly)')
      .option('--json', 'machine-readable output'),
  ).action(async (o: VaultFlags & PolicyFlags & { clear?: boolean }) => {
    const policy = policyFrom(o);
    if (o.clear && policy) throw new UsageError('Give either --clear or --keep-* rules, not both.');
    const vault = await openVault(o);
    if (o.timeZone) checkPolicy(DEFAULT_POLICY, o.timeZone);
    if (policy || o.clear || o.timeZone) {
      const next = policy ? { ...policy, ...(o.timeZone ? { timeZone: o.timeZone } : {}) } : o.clear ? undefined : { ...(vault.config.retention ?? DEFAULT_POLICY), timeZone: o.timeZone };
      await vault.setRetention(next, err);
      await withInventory(async (inv) => void inv.audit('policy.set', vault.id, { policy: next ?? 'default' }));
    }
    const current = vault.config.retention;
    if (o.json) out(JSON.stringify({ policy: current ?? DEFAULT_POLICY, isDefault: !current }));
    else out(`${current ? 'This vault keeps' : 'This vault has no policy of its own; the default keeps'}: ${describePolicy(current ?? DEFAULT_POLICY)}.`);
  });

  secretOptions(
    policyFlags(
      program
        .command('forget')
        .description('apply a retention policy: show which backups are kept and why, and forget the others')
        .requiredOption('--vault <dir>', 'vault folder'),
    )
      .option('--dry-run', 'only show what would be kept and forgotten')
      .option('--prune', 'then reclaim the space: delete unused packs and repack mostly-unused ones')
      .option('--json', 'machine-readable output'),
  ).action(
    async (o: VaultFlags & PolicyFlags & { dryRun?: boolean; prune?: boolean }) => {
      const given = policyFrom(o);
      const vault = await openVault(o);
      // Flags win; else this vault's own policy; else the default.
      const own = given ? undefined : vault.retentionPolicy();
      const policy: RetentionPolicy = given ?? (own ? { ...own, keepTags: [...new Set([...(DEFAULT_POLICY.keepTags ?? []), ...(own.keepTags ?? []), ...o.keepTag])] } : { ...DEFAULT_POLICY, keepTags: [...new Set([...(DEFAULT_POLICY.keepTags ?? []), ...o.keepTag])] });
      const timeZone = o.timeZone ?? own?.timeZone;
      const r = await withInventory((inv) => runForget(inv, vault, policy, { dryRun: !!o.dryRun, timeZone, prune: !!o.prune }));
      if (o.json) {
        out(JSON.stringify({ dryRun: r.dryRun, policy, kept: r.decisions.filter((d) => d.keep).map((d) => ({ id: d.snapshot.id, time: d.snapshot.time, reasons: d.reasons })), forgotten: r.forgotten, damaged: r.damaged, prune: r.prune }));
        return;
      }
      for (const d of r.decisions) {
        out(`${d.keep ? 'keep  ' : 'forget'}  ${d.snapshot.id.slice(0, 8)}  ${d.snapshot.time}${d.keep ? `  (${d.reasons.join(', ')})` : ''}`);
      }
      const n = r.forgotten.length;
      out(r.dryRun ? `Dry run: ${n} backup(s) would be forgotten; nothing was changed.` : `Forgot ${n} backup(s); ${r.decisions.length - n} kept.${r.prune ? '' : ' Their space is reclaimed by a later prune.'}`);
      if (r.prune) out(describePrune(r.prune));
      for (const id of r.damaged) err(`Left alone: snapshot ${id.slice(0, 8)} cannot be read (run verify).`);
    },
  );

  secretOptions(
    program
      .command('test-restore')
      .description('prove a backup restores: databases into scratch places (checked, then removed), a sample of media re-hashed')
      .requiredOption('--vault <dir>', 'vault folder')
      .option('--snapshot <id>', 'which backup ("latest" or an id)', 'latest')
      .option('--sample <n>', 'how many media files to restore and check', '20')
      .option('--postgres-target <url>', 'server for the scratch PostgreSQL database (default: the one backed up)')
      .option('--json', 'machine-readable output'),
  ).action(async (o: VaultFlags & { snapshot: string; sample: string; postgresTarget?: string }) => {
    if (!/^\d+$/.test(o.sample)) throw new UsageError(`--sample takes a whole number of files (got "${o.sample}").`);
    if (o.postgresTarget) parsePostgresUrl(o.postgresTarget, '--postgres-target'); // refuses a password in the URL, before any work
    const vault = await openVault(o);
    const snap = await vault.resolveSnapshot(o.snapshot);
    const r = await withInventory((inv) => runTestRestore(inv, vault, snap, { sample: Number(o.sample), postgresTarget: o.postgresTarget, log: o.json ? undefined : err }));
    if (o.json) out(JSON.stringify(r));
    else {
      for (const d of r.databases) {
        const n = Object.keys(d.tables).length;
        out(`${d.ok ? 'OK    ' : 'FAILED'}  database ${d.label}: ${d.ok ? `integrity ${d.integrityCheck ?? 'ok'}, row counts of ${n} table(s) match` : d.problem} (${(d.durationMs / 1000).toFixed(1)} s)`);
      }
      out(`${r.media.failed.length ? 'FAILED' : 'OK    '}  media: ${r.media.ok} of ${r.media.sampled} sampled file(s) (out of ${r.media.of}) restored identical${r.media.matchesOriginal ? `, ${r.media.matchesOriginal} also equal to the original on disk` : ''} (${(r.media.durationMs / 1000).toFixed(1)} s)`);
      for (const f of r.media.failed) out(`        ${f.path}: ${f.reason}`);
      const min = (ms: number): string => (ms < 60_000 ? `${Math.max(1, Math.round(ms / 1000))} s` : `${(ms / 60_000).toFixed(1)} min`);
      out(r.ok
        ? `Backup ${r.snapshot.slice(0, 8)} (${r.time}) is restorable, proved now. Estimated time to restore everything: ${min(r.rto.estimatedFullMs)}.`
        : `Backup ${r.snapshot.slice(0, 8)} (${r.time}) did NOT pass the test restore. Make a new backup to another drive and run "clinicvault verify --read-data".`);
    }
    if (!r.ok) process.exitCode = ExitCode.damage;
  });

  secretOptions(
    program
      .command('export')
      .description('write one backup as FILE.tar.age: opens with the standard age and tar tools, no ClinicVault needed')
      .requiredOption('--vault <dir>', 'vault folder')
      .option('--snapshot <id>', 'which backup ("latest" or an id)', 'latest')
      .requiredOption('--out <file>', 'the bundle to write, e.g. clinic-2026-11.tar.age (never overwritten)')
      .option('--export-passphrase-file <file>', 'read the bundle\'s passphrase from this file (else CLINICVAULT_EXPORT_PASSPHRASE or a prompt)')
      .option('--migration', 'a migration bundle: tag the backup pre-migration and add the checklist and rollback plan')
      .option('--from-version <x>', 'with --migration: the clinic software version now running')
      .option('--to-version <y>', 'with --migration: the version being installed')
      .option('--json', 'machine-readable output'),
  ).action(async (o: VaultFlags & { snapshot: string; out: string; exportPassphraseFile?: string; migration?: boolean; fromVersion?: string; toVersion?: string }) => {
    if (o.migration && (!o.fromVersion || !o.toVersion)) throw new UsageError('A migration bundle needs both --from-version X and --to-version Y.');
    if (!o.migration && (o.fromVersion || o.toVersion)) throw new UsageError('--from-version and --to-version go with --migration.');
    const passphrase = await newPassphrase(o.exportPassphraseFile, 'CLINICVAULT_EXPORT_PASSPHRASE', 'export');
    const vault = await openVault(o);
    const snap = await vault.resolveSnapshot(o.snapshot);
    const migration = o.migration ? { from: o.fromVersion!, to: o.toVersion! } : undefined;
    const r = await withInventory((inv) => runExport(inv, vault, snap, { out: o.out, passphrase, migration, appVersion: appVersion(), log: o.json ? undefined : err }));
    if (o.json) out(JSON.stringify(r));
    else {
      out(`Exported backup ${r.snapshot.slice(0, 8)}: ${r.files} file(s), ${formatBytes(r.bytes)}, into ${r.out} (${formatBytes(r.archiveBytes)}).`);
      if (r.tagged) out(`The backup is now tagged pre-migration (new id ${r.snapshot.slice(0, 8)}); the retention policy keeps it.`);
      out('Open it anywhere with:  age --decrypt --output bundle.tar FILE.tar.age && tar -xf bundle.tar');
    }
  });

  secretOptions(
    program
      .command('space')
      .description('space accounting: what each backup alone holds, used and reclaimable bytes, when the drive will be full')
      .requiredOption('--vault <dir>', 'vault folder')
      .option('--json', 'machine-readable output'),
  ).action(async (o: VaultFlags) => {
    const vault = await openVault(o);
    const r = await spaceReport(vault);
    if (o.json) {
      out(JSON.stringify(r));
      return;
    }
    out('Backup    time                      files size   only in this backup');
    for (const s of r.snapshots) out(`${s.id.slice(0, 8)}  ${s.time.padEnd(24)}  ${formatBytes(s.logicalBytes).padStart(10)}   ${formatBytes(s.uniqueBytes).padStart(10)}`);
    out(`Vault: ${formatBytes(r.vault.packBytes)} of data in ${r.vault.packs} pack(s); ${formatBytes(r.vault.usedBytes)} needed by backups, ${formatBytes(r.vault.reclaimableBytes)} reclaimable with "clinicvault prune".`);
    if (r.drive) out(`Drive: ${formatBytes(r.drive.freeBytes)} free of ${formatBytes(r.drive.totalBytes)}.`);
    if (r.growth) out(`Growth: ${formatBytes(r.growth.bytesPerDay)} a day over the last ${r.growth.days} day(s) (${r.growth.backups} backups).`);
    if (r.forecast) out(`At that rate the drive is full in about ${r.forecast.daysUntilFull} day(s), around ${r.forecast.fullOn}.`);
    else out(r.growth ? 'The vault is not growing.' : 'Not enough backup history yet to forecast when the drive will be full.');
  });

  secretOptions(
    program
      .command('erase')
      .description('remove files from every backup for good (GDPR erasure), e.g. one patient\'s folder')
      .requiredOption('--vault <dir>', 'vault folder')
      .requiredOption('--path <pattern>', 'what to erase: "<folder label>/<path>", a folder or a glob (repeatable)', collect, [])
      .option('--dry-run', 'only list what would be erased')
      .option('--json', 'machine-readable output'),
  ).action(async (o: VaultFlags & { path: string[]; dryRun?: boolean }) => {
    const vault = await openVault(o);
    const r = await withInventory((inv) => runErase(inv, vault, o.path, { dryRun: !!o.dryRun, log: err }));
    if (o.json) {
      out(JSON.stringify(r));
      return;
    }
    const files = new Set(r.matches.flatMap((m) => m.files));
    for (const m of r.matches) out(`${m.snapshot.slice(0, 8)}  ${m.time}  ${m.files.length} file(s), ${formatBytes(m.bytes)}`);
    if (r.dryRun) {
      for (const f of [...files].sort()) out(`  ${f}`);
      out(`Dry run: ${files.size} file(s) in ${r.matches.length} backup(s) would be erased; nothing was changed.`);
      return;
    }
    out(`Erased ${files.size} file(s) from ${r.matches.length} backup(s)${r.prune ? `; ${describePrune(r.prune)}` : '.'}`);
    if (files.size > 0) out('If these files are still on this computer, delete them there too, or the next backup stores them again.');
  });

  secretOptions(
    program
      .command('prune')
      .description('reclaim the space of forgotten backups: delete unused packs, repack mostly-unused ones')
      .requiredOption('--vault <dir>', 'vault folder')
      .option('--dry-run', 'only show what would be reclaimed')
      .option('--json', 'machine-readable output'),
  ).action(async (o: VaultFlags & { dryRun?: boolean }) => {
    const vault = await openVault(o);
    const r = await withInventory((inv) => runPrune(inv, vault, { dryRun: !!o.dryRun, log: err }));
    out(o.json ? JSON.stringify(r) : describePrune(r));
  });

  secretOptions(
    program
      .command('verify')
      .description('check that the vault is complete and (with --read-data) that every byte reads back correctly')
      .requiredOption('--vault <dir>', 'vault folder')
      .option('--read-data', 'read and authenticate every chunk (slower, thorough)')
      .option('--read-data-subset <percent>', 'read a rotating share, e.g. 10% (each run the next share; all of it over a cycle)')
      .option('--json', 'machine-readable output'),
  ).action(async (o: VaultFlags & { readData?: boolean; readDataSubset?: string }) => {
    let subsetPercent: number | undefined;
    if (o.readDataSubset !== undefined) {
      const m = /^(\d+(?:\.\d+)?)%?$/.exec(o.readDataSubset.trim());
      subsetPercent = m ? Number(m[1]) : NaN;
      if (!(subsetPercent > 0 && subsetPercent <= 100)) throw new UsageError(`--read-data-subset takes a percentage between 0 and 100, e.g. 10% (got "${o.readDataSubset}").`);
    }
    const vault = await openVault(o);
    const bar = progressBar(!o.json && (!!o.readData || !!subsetPercent), 'Verifying');
    const report = await withInventory((inv) =>
      runVerify(inv, vault, { readData: !!o.readData, subsetPercent, onProgress: (p) => bar.update(p.bytesDone, p.bytesTotal, { done: p.packsDone, total: p.packsTotal }) }),
    ).finally(() => bar.stop());
    if (o.json) {
      out(JSON.stringify(report));
    } else {
      const share = report.subset ? ` in share ${report.subset.group + 1} of ${report.subset.of} (${report.subset.packsRead} pack(s))` : '';
      const what = report.readData ? `read and checked ${report.chunksChecked} chunks (${formatBytes(report.bytesRead)})${share}` : 'checked the structure';
      if (report.ok) out(`Vault OK: ${report.snapshots} backup(s), ${report.packs} pack(s); ${what} in ${(report.durationMs / 1000).toFixed(1)} s.`);
      else {
        out(`Vault has ${report.problems.length} problem(s) (${what}):`);
        for (const p of report.problems) out(`- ${p.message}`);
      }
    }
    if (!report.ok) process.exitCode = ExitCode.damage;
  });

  const key = program.command('key').description('manage how the vault is opened');
  secretOptions(
    key
      .command('change-passphrase')
      .description('set a new passphrase (data is not re-encrypted)')
      .requiredOption('--vault <dir>', 'vault folder')
      .option('--new-passphrase-file <file>', 'read the new passphrase from this file (else CLINICVAULT_NEW_PASSPHRASE or a prompt)'),
  ).action(async (o: VaultFlags & { newPassphraseFile?: string }) => {
    const vault = await openVault(o);
    const pass = await newPassphrase(o.newPassphraseFile, 'CLINICVAULT_NEW_PASSPHRASE');
    checkNewPassphrase(pass);
    vault.checkWriterConfig();
    const lock = await VaultLock.acquire(vault.storage, 'key change-passphrase', err);
    try {
      const old = (await readSlots(vault.storage)).filter((s) => s.slot.kind === 'passphrase');
      await writeSlot(vault.storage, await makePassphraseSlot(vault.keys, pass, vault.config.kdf));
      // Only after the new slot is durable and opens the vault are the old ones removed.
      await unlock(vault.storage, { passphrase: pass });
      for (const s of old) await vault.storage.remove('keys', s.name);
    } finally {
      await lock.release();
    }
    await withInventory(async (inv) => void inv.audit('key.change-passphrase', vault.id, {}));
    out('Passphrase changed. The old passphrase no longer opens this vault; the recovery key still does.');
  });
  secretOptions(
    key
      .command('add-recovery-key')
      .description('create a new recovery key and print it once')
      .requiredOption('--vault <dir>', 'vault folder')
      .option('--replace', 'revoke all earlier recovery keys')
      .option('--json', 'machine-readable output'),
  ).action(async (o: VaultFlags & { replace?: boolean }) => {
    const vault = await openVault(o);
    const lock = await VaultLock.acquire(vault.storage, 'key add-recovery-key', err);
    const rk = generateRecoveryKey();
    let revoked = 0;
    try {
      const old = (await readSlots(vault.storage)).filter((s) => s.slot.kind === 'recovery');
      await writeSlot(vault.storage, makeRecoverySlot(vault.keys, rk.bytes));
      if (o.replace) {
        for (const s of old) {
          await vault.storage.remove('keys', s.name);
          revoked++;
        }
      }
    } finally {
      await lock.release();
    }
    await withInventory(async (inv) => void inv.audit('key.add-recovery-key', vault.id, { revoked }));
    if (o.json) out(JSON.stringify({ recoveryKey: rk.text, revoked }));
    else {
      out('NEW RECOVERY KEY (shown only this once):');
      out('');
      out(`    ${rk.text}`);
      out('');
      out(revoked ? `The ${revoked} earlier recovery key(s) no longer open this vault.` : 'Earlier recovery keys still open this vault (use --replace to revoke them).');
    }
  });

  const invCmd = program.command('inventory').description('the local record of vaults, backups and the audit log');
  secretOptions(invCmd.command('rebuild').description('rebuild the inventory from a vault (e.g. on a new PC)').requiredOption('--vault <dir>', 'vault folder').option('--json', 'machine-readable output')).action(
    async (o: VaultFlags) => {
      const vault = await openVault(o);
      const r = await withInventory((inv) => rebuildInventory(inv, vault));
      if (o.json) out(JSON.stringify(r));
      else out(`Inventory rebuilt from ${vault.location}: ${r.snapshots} backup(s), ${r.auditImported} audit entries recovered${r.damaged ? `, ${r.damaged} damaged snapshot(s) skipped` : ''}.`);
    },
  );

  program
    .command('status')
    .description('what the inventory knows: vaults, latest backups, last checks, recent runs')
    .option('--json', 'machine-readable output')
    .action(async (o: { json?: boolean }) => {
      await withInventory(async (inv) => {
        const vaults = inv.vaults().map((v) => ({
          ...v,
          reachable: fs.existsSync(path.join(v.location, 'config.json')),
          snapshots: inv.snapshotCount(v.id),
          latestSnapshot: inv.latestSnapshot(v.id) ?? null,
          lastVerification: inv.lastVerification(v.id) ?? null,
          lastTestRestore: testRestoreSummary(inv.lastTestRestore(v.id)),
        }));
        const runs = inv.lastRuns(10);
        if (o.json) {
          out(JSON.stringify({ home: appDataDir(), vaults, runs }));
          return;
        }
        if (vaults.length === 0) out('No vaults known yet. Create one with "clinicvault init --vault DIR".');
        for (const v of vaults) {
          out(`Vault ${v.id} at ${v.location}${v.reachable ? '' : ' (NOT CONNECTED)'}`);
          out(`  backups: ${v.snapshots}; latest: ${v.latestSnapshot ? v.latestSnapshot.time : 'none'}`);
          out(`  last check: ${v.lastVerification ? `${v.lastVerification.time} (${v.lastVerification.kind}, ${v.lastVerification.ok ? 'ok' : 'PROBLEMS'})` : 'never'}`);
          const tr = v.lastTestRestore;
          out(`  ${tr ? (tr.ok ? `restorable, proved on ${tr.time.slice(0, 10)} (backup ${tr.snapshot.slice(0, 8)}, full restore about ${Math.ceil(tr.estimatedFullMs / 60_000)} min)` : `test restore FAILED on ${tr.time.slice(0, 10)}`) : 'never test-restored'}`);
        }
        const lastFailed = runs.find((r) => r.status === 'failed');
        if (lastFailed) out(`Last failure: ${lastFailed.kind} at ${lastFailed.started}: ${lastFailed.error ?? ''}`);
      });
    });

  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      return e.exitCode === 0 ? 0 : ExitCode.usage;
    }
    if (e instanceof ClinicVaultError) {
      err(`clinicvault: ${e.message}`);
      return e.exitCode;
    }
    if ((e as Error).name === 'ExitPromptError') {
      err('clinicvault: cancelled.');
      return ExitCode.usage;
    }
    err(`clinicvault: unexpected error: ${(e as Error).stack ?? String(e)}`);
    err(`Please report this. Nothing already backed up was changed. (${os.platform()} ${process.version})`);
    return ExitCode.failure;
  }
}


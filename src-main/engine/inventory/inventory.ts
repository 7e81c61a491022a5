// The inventory: a SQLite database in the app's data folder that knows every vault, snapshot, run and
// verification, plus an append-only audit log whose entries are hash-chained so tampering is detectable.
// It can be rebuilt from a vault alone (snapshots carry the audit history).
import Database from 'better-sqlite3';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as os from 'node:os';
import { sha256Hex } from '../vault/crypto.js';
import type { AuditRecord, Snapshot } from '../vault/snapshot.js';

const MIGRATIONS: string[] = [
  `CREATE TABLE vaults (
     id TEXT PRIMARY KEY, location TEXT NOT NULL, created TEXT NOT NULL, last_seen TEXT NOT NULL);
   CREATE TABLE snapshots (
     id TEXT PRIMARY KEY, vault_id TEXT NOT NULL REFERENCES vaults(id), time TEXT NOT NULL, host TEXT NOT NULL,
     tags TEXT NOT NULL, sources TEXT NOT NULL, bytes_read INTEGER NOT NULL, bytes_added INTEGER NOT NULL,
     files INTEGER NOT NULL, forgotten TEXT);
   CREATE INDEX snapshots_vault ON snapshots(vault_id, time);
   CREATE TABLE runs (
     id INTEGER PRIMARY KEY, vault_id TEXT, kind TEXT NOT NULL, started TEXT NOT NULL, ended TEXT,
     status TEXT NOT NULL, error TEXT, bytes INTEGER, files INTEGER, snapshot_id TEXT);
   CREATE TABLE verifications (
     id INTEGER PRIMARY KEY, vault_id TEXT NOT NULL, snapshot_id TEXT, time TEXT NOT NULL, kind TEXT NOT NULL,
     ok INTEGER NOT NULL, details TEXT NOT NULL);
   CREATE TABLE audit (
     seq INTEGER PRIMARY KEY, time TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, vault_id TEXT,
     details TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
   CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
   CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;`,
];

export const GENESIS = '0'.repeat(64);

export function auditHash(r: Omit<AuditRecord, 'hash'>): string {
  return sha256Hex(JSON.stringify([r.seq, r.time, r.actor, r.action, r.vaultId, r.details, r.prevHash]));
}

export type RunKind = 'backup' | 'restore' | 'verify' | 'init' | 'key-change' | 'rebuild' | 'forget' | 'prune' | 'erase' | 'test-restore' | 'export';
export type RunStatus = 'running' | 'ok' | 'partial' | 'failed';

export interface RunRow {
  id: number;
  vault_id: string | null;
  kind: RunKind;
  started: string;
  ended: string | null;
  status: RunStatus;
  error: string | null;
  bytes: number | null;
  files: number | null;
  snapshot_id: string | null;
}

/** The app's data folder: CLINICVAULT_HOME, else the Electron userData path for the product name. */
export function appDataDir(env: NodeJS.ProcessEnv = process.env, platform = process.platform): string {
  if (env.CLINICVAULT_HOME) return path.resolve(env.CLINICVAULT_HOME);
  const home = os.homedir();
  if (platform === 'win32') return path.join(env.APPDATA ?? path.join(home, 'AppData', 'Roaming'), 'ClinicVault');
  if (platform === 'darwin') return path.join(home, 'Library', 'Application Support', 'ClinicVault');
  return path.join(env.XDG_CONFIG_HOME ?? path.join(home, '.config'), 'ClinicVault');
}

export class Inventory {
  readonly db: Database.Database;

  constructor(file: string, private readonly now: () => Date = () => new Date()) {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    // SQLite's advice for WAL: commits are not fsynced, checkpoints are, and the file stays consistent. A power cut
    // may lose the last few rows; everything in it can be rebuilt from the vaults (rebuild-inventory), whose
    // snapshots carry the audit history. A backup's first audit row otherwise waited ~0.2 s for the disk to take the
    // database copy just made beside it.
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 10000');
    this.migrate();
  }

  static openDefault(): Inventory {
    return new Inventory(path.join(appDataDir(), 'inventory.sqlite'));
  }

  private migrate(): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version > MIGRATIONS.length) {
      throw new Error(`The inventory was written by a newer ClinicVault (schema ${version}); update ClinicVault.`);
    }
    for (let v = version; v < MIGRATIONS.length; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v]!);
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  close(): void {
    this.db.close();
  }

  upsertVault(id: string, location: string, created: string): void {
    const t = this.now().toISOString();
    this.db
      .prepare(`INSERT INTO vaults(id, location, created, last_seen) VALUES (?, ?, ?, ?)
                ON CONFLICT(id) DO UPDATE SET location = excluded.location, last_seen = excluded.last_seen`)
      .run(id, location, created, t);
  }

  markForgotten(ids: string[]): void {
    const when = this.now().toISOString();
    const st = this.db.prepare('UPDATE snapshots SET forgotten = ? WHERE id = ?');
    this.db.transaction(() => {
      for (const id of ids) st.run(when, id);
    })();
  }

  /** `files`: how many files it holds, when `s` is a listing without its file lists (Vault.listSnapshots). */
  recordSnapshot(vaultId: string, id: string, s: Snapshot, files = fileCount(s)): void {
    const sources = s.sources.map((src) => ({ kind: src.kind, label: src.label, originalPath: src.originalPath }));
    this.db
      .prepare(`INSERT OR REPLACE INTO snapshots(id, vault_id, time, host, tags, sources, bytes_read, bytes_added, files)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
      .run(id, vaultId, s.time, s.host, JSON.stringify(s.tags), JSON.stringify(sources), s.totals.bytesRead, s.totals.bytesAdded, files);
  }

  startRun(kind: RunKind, vaultId: string | null): number {
    return Number(
      this.db.prepare(`INSERT INTO runs(vault_id, kind, started, status) VALUES (?, ?, ?, 'running')`).run(vaultId, kind, this.now().toISOString())
        .lastInsertRowid,
    );
  }

  endRun(id: number, status: RunStatus, fields: { error?: string; bytes?: number; files?: number; snapshotId?: string; vaultId?: string } = {}): void {
    this.db
      .prepare(`UPDATE runs SET ended = ?, status = ?, error = ?, bytes = ?, files = ?, snapshot_id = ?, vault_id = COALESCE(?, vault_id) WHERE id = ?`)
      .run(this.now().toISOString(), status, fields.error ?? null, fields.bytes ?? null, fields.files ?? null, fields.snapshotId ?? null, fields.vaultId ?? null, id);
  }

  countVerifications(vaultId: string, kind: string): number {
    return (this.db.prepare('SELECT count(*) AS n FROM verifications WHERE vault_id = ? AND kind = ?').get(vaultId, kind) as { n: number }).n;
  }

  recordVerification(vaultId: string, kind: string, ok: boolean, details: unknown, snapshotId: string | null = null): void {
    this.db
      .prepare(`INSERT INTO verifications(vault_id, snapshot_id, time, kind, ok, details) VALUES (?, ?, ?, ?, ?, ?)`)
      .run(vaultId, snapshotId, this.now().toISOString(), kind, ok ? 1 : 0, JSON.stringify(details));
  }

  /** Append to the audit log. Details must never hold secrets or patient data. */
  audit(action: string, vaultId: string | null, details: Record<string, unknown> = {}, actor = currentUser()): AuditRecord {
    return this.db.transaction(() => {
      const last = this.db.prepare('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1').get() as { seq: number; hash: string } | undefined;
      const rec: Omit<AuditRecord, 'hash'> = {
        seq: (last?.seq ?? 0) + 1,
        time: this.now().toISOString(),
        actor,
        action,
        vaultId,
        details,
        prevHash: last?.hash ?? GENESIS,
      };
      const full: AuditRecord = { ...rec, hash: auditHash(rec) };
      this.insertAudit(full);
      return full;
    })();
  }

  private insertAudit(r: AuditRecord): void {
    this.db
      .prepare('INSERT INTO audit(seq, time, actor, action, vault_id, details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run(r.seq, r.time, r.actor, r.action, r.vaultId, JSON.stringify(r.details), r.prevHash, r.hash);
  }

  auditLog(): AuditRecord[] {
    return (this.db.prepare('SELECT * FROM audit ORDER BY seq').all() as Array<Record<string, unknown>>).map((r) => ({
      seq: r.seq as number,
      time: r.time as string,
      actor: r.actor as string,
      action: r.action as string,
      vaultId: (r.vault_id as string | null) ?? null,
      details: JSON.parse(r.details as string) as Record<string, unknown>,
      prevHash: r.prev_hash as string,
      hash: r.hash as string,
    }));
  }

  /** Import audit entries carried by a snapshot (rebuild on a new PC); only when the log is empty or they extend it. */
  importAudit(records: AuditRecord[]): number {
    const problem = verifyAuditChain(records);
    if (problem) throw new Error(`The audit history stored in the vault is not intact: ${problem}`);
    return this.db.transaction(() => {
      const have = new Set((this.db.prepare('SELECT hash FROM audit').pluck().all() as string[]));
      const last = this.db.prepare('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1').get() as { seq: number; hash: string } | undefined;
      let added = 0;
      let tip = last;
      for (const r of records) {
        if (have.has(r.hash)) continue;
        if ((tip?.hash ?? GENESIS) !== r.prevHash || (tip?.seq ?? 0) + 1 !== r.seq) continue;
        this.insertAudit(r);
        tip = { seq: r.seq, hash: r.hash };
        added++;
      }
      return added;
    })();
  }

  lastRuns(limit = 20): RunRow[] {
    return this.db.prepare('SELECT * FROM runs ORDER BY id DESC LIMIT ?').all(limit) as RunRow[];
  }

  vaults(): Array<{ id: string; location: string; created: string; last_seen: string }> {
    return this.db.prepare('SELECT * FROM vaults ORDER BY created').all() as Array<{ id: string; location: string; created: string; last_seen: string }>;
  }

  latestSnapshot(vaultId: string): { id: string; time: string } | undefined {
    return this.db.prepare('SELECT id, time FROM snapshots WHERE vault_id = ? AND forgotten IS NULL ORDER BY time DESC LIMIT 1').get(vaultId) as
      | { id: string; time: string }
      | undefined;
  }

  snapshotCount(vaultId: string): number {
    return this.db.prepare('SELECT count(*) FROM snapshots WHERE vault_id = ? AND forgotten IS NULL').pluck().get(vaultId) as number;
  }

  lastVerification(vaultId: string): { time: string; kind: string; ok: number } | undefined {
    return this.db.prepare('SELECT time, kind, ok FROM verifications WHERE vault_id = ? ORDER BY id DESC LIMIT 1').get(vaultId) as
      | { time: string; kind: string; ok: number }
      | undefined;
  }

  /** The latest test restore of this vault (of any of its snapshots), passed or not. */
  lastTestRestore(vaultId: string): { time: string; snapshot_id: string; ok: number; details: string } | undefined {
    return this.db
      .prepare("SELECT time, snapshot_id, ok, details FROM verifications WHERE vault_id = ? AND kind = 'test-restore' ORDER BY id DESC LIMIT 1")
      .get(vaultId) as { time: string; snapshot_id: string; ok: number; details: string } | undefined;
  }

  /** Per snapshot: the latest check recorded against it (test restores), newest first. */
  snapshotProofs(vaultId: string): Array<{ snapshot_id: string; time: string; kind: string; ok: number }> {
    return this.db
      .prepare(`SELECT snapshot_id, time, kind, ok FROM verifications v WHERE vault_id = ? AND snapshot_id IS NOT NULL
                AND id = (SELECT max(id) FROM verifications w WHERE w.vault_id = v.vault_id AND w.snapshot_id = v.snapshot_id AND w.kind = v.kind)
                ORDER BY time DESC`)
      .all(vaultId) as Array<{ snapshot_id: string; time: string; kind: string; ok: number }>;
  }

  markMissingSnapshots(vaultId: string, present: string[]): void {
    const keep = new Set(present);
    const rows = this.db.prepare('SELECT id FROM snapshots WHERE vault_id = ? AND forgotten IS NULL').pluck().all(vaultId) as string[];
    const stmt = this.db.prepare('UPDATE snapshots SET forgotten = ? WHERE id = ?');
    for (const id of rows) if (!keep.has(id)) stmt.run(this.now().toISOString(), id);
  }
}

function currentUser(): string {
  try {
    return os.userInfo().username;
  } catch {
    return process.env.USER ?? process.env.USERNAME ?? 'unknown';
  }
}

/** Returns a description of the first break in the chain, or undefined when it is intact. */
export function verifyAuditChain(records: AuditRecord[]): string | undefined {
  let prev = GENESIS;
  let seq = 0;
  for (const r of records) {
    if (r.seq !== seq + 1) return `entry ${r.seq} follows entry ${seq}`;
    if (r.prevHash !== prev) return `entry ${r.seq} does not link to the entry before it`;
    const { hash, ...rest } = r;
    if (auditHash(rest) !== hash) return `entry ${r.seq} was altered`;
    prev = hash;
    seq = r.seq;
  }
  return undefined;
}

/** The files a backup holds (its file lists' file entries). */
export function fileCount(s: Snapshot): number {
  return s.sources.reduce((a, src) => a + src.entries.filter((e) => e.type === 'file').length, 0);
}

// Test restore: prove that a backup restores, without touching anything live. Databases are restored in full
// into scratch places (SQLite: a temporary folder; PostgreSQL: a new database on the server, dropped afterwards)
// and checked: integrity and every table's row count against the snapshot. A random sample of media files is
// restored and each is re-hashed: its chunks must give the ids the snapshot lists, and when the original is still
// on disk unchanged (same size and time), its SHA-256 must equal the original's. The timings are the measured
// recovery time; the full media restore time is extrapolated from the sample's throughput.
import { randomBytes, randomInt } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { restore } from './restore.js';
import { restorePostgres } from './restore-postgres.js';
import { connect, parsePostgresUrl } from './sources/postgres.js';
import { quoteIdent } from './sources/sqlite.js';
import { sha256File } from './sources/folder.js';
import { hmac } from './vault/crypto.js';
import { decodeContent, type TreeEntry } from './vault/snapshot.js';
import type { SnapshotListing, Vault } from './vault/vault.js';

export interface TestRestoreOptions {
  /** Media files to restore and re-hash (default 20). */
  sample?: number;
  /** Server for PostgreSQL scratch databases; default: the server each database was backed up from. */
  postgresTarget?: string;
  tmpDir?: string;
  log?: (msg: string) => void;
}

export interface DatabaseProof {
  kind: 'sqlite' | 'postgres';
  label: string;
  ok: boolean;
  integrityCheck?: string;
  tables: Record<string, { expected: number; actual: number }>;
  bytes: number;
  durationMs: number;
  problem?: string;
}

export interface MediaProof {
  sampled: number;
  of: number;
  bytes: number;
  ok: number;
  /** Sampled files whose original is still on disk, unchanged, and equal to the restored copy. */
  matchesOriginal: number;
  failed: Array<{ path: string; reason: string }>;
  durationMs: number;
}

export interface TestRestoreReport {
  snapshot: string;
  time: string;
  ok: boolean;
  databases: DatabaseProof[];
  media: MediaProof;
  /** Measured: databases in full plus the media sample. Estimated: databases plus all media at the sample's rate. */
  rto: { measuredMs: number; estimatedFullMs: number; mediaBytes: number };
  durationMs: number;
}

function pickSample<T>(items: T[], n: number): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = randomInt(i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a.slice(0, n);
}

export async function testRestore(vault: Vault, snap: SnapshotListing, opts: TestRestoreOptions = {}): Promise<TestRestoreReport> {
  const t0 = performance.now();
  const log = opts.log ?? (() => undefined);
  const tmpBase = opts.tmpDir ?? os.tmpdir();
  await fsp.mkdir(tmpBase, { recursive: true, mode: 0o700 });
  const scratch = await fsp.mkdtemp(path.join(tmpBase, 'clinicvault-test-restore-'));
  // The proof is that the drive alone restores: the local cache stands for the index files only once each is intact.
  const index = await vault.loadIndex({ checkFiles: true });
  const databases: DatabaseProof[] = [];
  try {
    for (const src of snap.snapshot.sources) {
      const t = performance.now();
      if (src.kind === 'sqlite') {
        log(`Restoring the database ${src.label} into a scratch folder...`);
        const proof: DatabaseProof = { kind: 'sqlite', label: src.label, ok: false, tables: {}, bytes: src.size, durationMs: 0 };
        try {
          const r = await restore(vault, snap.snapshot, { target: path.join(scratch, 'sqlite'), include: [src.label], index, fullIntegrityCheck: true });
          const db = r.databases[0];
          if (r.failed.length > 0 || !db) proof.problem = r.failed.map((f) => `${f.path}: ${f.reason}`).join('; ') || 'the database file was not restored';
          else {
            proof.integrityCheck = db.integrityCheck;
            for (const [t, n] of Object.entries(db.expected)) proof.tables[t] = { expected: n, actual: db.actual[t] ?? -1 };
            proof.ok = db.ok;
            if (!db.ok) proof.problem = db.integrityCheck !== 'ok' ? `integrity check: ${db.integrityCheck}` : 'row counts differ from the backup';
          }
        } catch (err) {
          proof.problem = (err as Error).message;
        }
        proof.durationMs = Math.round(performance.now() - t);
        databases.push(proof);
      } else if (src.kind === 'postgres') {
        const proof: DatabaseProof = { kind: 'postgres', label: src.label, ok: false, tables: {}, bytes: src.dump.size, durationMs: 0 };
        const server = opts.postgresTarget ?? src.originalPath;
        const scratchDb = `clinicvault_test_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
        log(`Restoring the database ${src.label} into the scratch database ${scratchDb}...`);
        try {
          const r = await restorePostgres(vault, snap.snapshot, { target: server, asNewDatabase: scratchDb, source: src.label, tmpDir: path.join(scratch, 'pg'), log });
          proof.tables = r.tables;
          proof.ok = r.ok;
          if (!r.ok) proof.problem = 'row counts differ from the backup';
        } catch (err) {
          proof.problem = (err as Error).message;
        } finally {
          await dropScratch(server, scratchDb).catch((err: Error) => {
            proof.problem = `${proof.problem ? `${proof.problem}; ` : ''}the scratch database ${scratchDb} could not be dropped (${err.message}); drop it by hand`;
          });
        }
        proof.durationMs = Math.round(performance.now() - t);
        databases.push(proof);
      }
    }

    // Media: a random sample of files from the folder sources.
    const tm = performance.now();
    const all: Array<{ label: string; root: string; entry: TreeEntry }> = [];
    for (const src of snap.snapshot.sources) {
      if (src.kind !== 'folder') continue;
      for (const e of src.entries) if (e.type === 'file') all.push({ label: src.label, root: src.originalPath, entry: e });
    }
    const sample = pickSample(all, opts.sample ?? 20);
    const media: MediaProof = { sampled: sample.length, of: all.length, bytes: 0, ok: 0, matchesOriginal: 0, failed: [], durationMs: 0 };
    if (sample.length > 0) {
      log(`Restoring ${sample.length} of ${all.length} media files and checking them...`);
      const target = path.join(scratch, 'media');
      const r = await restore(vault, snap.snapshot, { target, include: sample.map((s) => `${s.label}/${s.entry.path}`), index });
      const failed = new Map(r.failed.map((f) => [f.path, f.reason]));
      for (const s of sample) {
        const rel = `${s.label}/${s.entry.path}`;
        const reason = failed.get(rel) ?? (await checkFile(vault, index, path.join(target, s.label, ...s.entry.path.split('/')), s.entry));
        if (reason) {
          media.failed.push({ path: rel, reason });
          continue;
        }
        media.ok++;
        media.bytes += s.entry.size;
        const original = path.join(s.root, ...s.entry.path.split('/'));
        const st = await fsp.stat(original).catch(() => undefined);
        if (st && st.size === s.entry.size && Math.abs(st.mtimeMs - s.entry.mtimeMs) < 1) {
          if ((await sha256File(original)) === (await sha256File(path.join(target, s.label, ...s.entry.path.split('/'))))) media.matchesOriginal++;
          else media.failed.push({ path: rel, reason: 'differs from the original on disk, although the original has the same size and time (check the disk holding the original)' });
        }
      }
    }
    media.durationMs = Math.round(performance.now() - tm);

    const dbMs = databases.reduce((a, d) => a + d.durationMs, 0);
    const mediaBytes = all.reduce((a, s) => a + s.entry.size, 0);
    const rate = media.bytes > 0 ? media.bytes / Math.max(1, media.durationMs) : 0;
    const estimatedMedia = rate > 0 ? Math.round(mediaBytes / rate) : media.durationMs;
    return {
      snapshot: snap.id,
      time: snap.snapshot.time,
      ok: databases.every((d) => d.ok) && media.failed.length === 0,
      databases,
      media,
      rto: { measuredMs: dbMs + media.durationMs, estimatedFullMs: dbMs + estimatedMedia, mediaBytes },
      durationMs: Math.round(performance.now() - t0),
    };
  } finally {
    await fsp.rm(scratch, { recursive: true, force: true });
  }
}

/** The restored file must have the recorded size, and its bytes, cut where the snapshot's chunks end, must give
 * exactly the snapshot's chunk ids. Returns the problem, or undefined. */
async function checkFile(vault: Vault, index: Awaited<ReturnType<Vault['loadIndex']>>, file: string, entry: TreeEntry): Promise<string | undefined> {
  const st = await fsp.stat(file).catch(() => undefined);
  if (!st) return 'was not restored';
  if (st.size !== entry.size) return `restored with ${st.size} bytes, the backup says ${entry.size}`;
  const fh = await fsp.open(file, 'r');
  try {
    let offset = 0;
    for (const id of decodeContent(entry.content)) {
      const len = index.get(id)?.blob.rawLength;
      if (len === undefined) return 'a chunk is missing from the vault index';
      const buf = Buffer.allocUnsafe(len);
      const { bytesRead } = await fh.read(buf, 0, len, offset);
      if (bytesRead !== len || !hmac(vault.keys.id, buf).equals(id)) return `content differs from the backup at byte ${offset}`;
      offset += len;
    }
    return offset === entry.size ? undefined : 'the chunk list does not cover the file';
  } finally {
    await fh.close();
  }
}

async function dropScratch(server: string, db: string): Promise<void> {
  const admin = await connect(parsePostgresUrl(server, '--postgres-target'), 'postgres');
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(db)}`);
  } finally {
    await admin.end();
  }
}

// Snapshots: the record of one backup, written last. Sealed JSON (deflated), named by the SHA-256 of its bytes.
import { promisify } from 'node:util';
import { constants as zc, deflateRaw, deflateRawSync, inflateRawSync } from 'node:zlib';
import { open, sealParts, sha256 } from './crypto.js';
import type { MasterKeys } from './keys.js';
import type { Storage } from './storage.js';

export const SNAPSHOT_AAD = 'clinicvault:snapshot:v1';
export const ID_BYTES = 32;

export interface TreeEntry {
  /** POSIX-style path relative to the source root ('' never appears). */
  path: string;
  type: 'file' | 'dir';
  size: number;
  mode: number;
  mtimeMs: number;
  /** inode (or file index) when the platform has one; used only to detect unchanged files. */
  ino?: number;
  /** Concatenated 32-byte chunk ids, base64. Absent for directories; empty string for empty files. */
  content?: string;
}

export interface SqliteSource {
  kind: 'sqlite';
  label: string;
  originalPath: string;
  pageSize: number;
  size: number;
  tables: Record<string, number>;
  integrityCheck: string;
  entries: TreeEntry[];
}

export interface FolderSource {
  kind: 'folder';
  label: string;
  originalPath: string;
  fileCount: number;
  bytes: number;
  excludes: string[];
  skipped: Array<{ path: string; reason: string }>;
  entries: TreeEntry[];
}

/** A PostgreSQL database: its pg_dump (custom format, uncompressed) as `<label>.dump`, the cluster's roles as
 * `globals.sql` when they could be read, and the facts a restore is checked against. */
export interface PostgresSource {
  kind: 'postgres';
  label: string;
  /** Connection URL without a password. */
  originalPath: string;
  server: { host: string; port: number; database: string; user: string; version: string; versionNum: number };
  databaseSize: number;
  owner: string;
  encoding: string;
  collate: string;
  ctype: string;
  dump: { format: 'custom'; compression: 0; size: number; tool: string; snapshot: string };
  globals: { included: boolean; rolePasswords: boolean; problem?: string };
  /** Exact row counts taken in the same transaction snapshot as the dump, keyed "schema.table". */
  tables: Record<string, number>;
  migrations: { table: string; applied: string[] } | null;
  entries: TreeEntry[];
}

export type SnapshotSource = SqliteSource | FolderSource | PostgresSource;

export interface AuditRecord {
  seq: number;
  time: string;
  actor: string;
  action: string;
  vaultId: string | null;
  details: Record<string, unknown>;
  prevHash: string;
  hash: string;
}

export interface SnapshotTotals {
  bytesRead: number;
  bytesAdded: number;
  chunksAdded: number;
  filesNew: number;
  filesChanged: number;
  filesUnchanged: number;
  durationMs: number;
}

export interface Snapshot {
  version: 1;
  time: string;
  host: string;
  appVersion: string;
  tags: string[];
  parent: string | null;
  sources: SnapshotSource[];
  totals: SnapshotTotals;
  audit: AuditRecord[];
  /** Set on a snapshot rewritten by erase: the id of the snapshot it replaces. */
  rewrittenFrom?: string;
  /** Erasures applied to this backup: when, and how many files and bytes were removed (never which). */
  erasures?: Array<{ time: string; files: number; bytes: number }>;
}

export function encodeContent(ids: Buffer[]): string {
  return Buffer.concat(ids).toString('base64');
}

/** A file's chunk ids laid end to end, 32 bytes each. */
export function contentIds(content: string | undefined): Buffer {
  const buf = Buffer.from(content ?? '', 'base64');
  if (buf.length % ID_BYTES !== 0) throw new Error('malformed chunk list');
  return buf;
}

/** A file's chunk ids, one Buffer each (views into one buffer). */
export function decodeContent(content: string | undefined): Buffer[] {
  const buf = contentIds(content);
  const ids: Buffer[] = [];
  for (let o = 0; o < buf.length; o += ID_BYTES) ids.push(buf.subarray(o, o + ID_BYTES));
  return ids;
}

export function writeSnapshot(storage: Storage, keys: MasterKeys, snap: Snapshot): Promise<string> {
  return storeSnapshot(storage, keys, [deflateRawSync(JSON.stringify(snap))]);
}

/** Seal a snapshot's compressed JSON (in pieces) and store it under the SHA-256 of the sealed bytes. */
async function storeSnapshot(storage: Storage, keys: MasterKeys, compressed: Buffer[]): Promise<string> {
  const sealed = sealParts(keys.encryption, compressed, SNAPSHOT_AAD);
  const id = sha256(sealed).toString('hex');
  await storage.write('snapshots', id, sealed);
  return id;
}

/** A backup's snapshot but for its totals, which are known last. */
export type SnapshotDraft = Omit<Snapshot, 'totals'>;

const deflateRawAsync = promisify(deflateRaw);

/** Start compressing a backup's snapshot while the backup finishes (its index written): everything but the totals,
 * on the thread pool, ending at a byte boundary (Z_SYNC_FLUSH). `write` then compresses the
 * totals on their own and appends them: two raw deflate streams laid end to end are one (as pigz makes them), so the
 * file reads as writeSnapshot's does, to the same JSON. At the end of a second backup this took ~55 ms of the main
 * thread for ~2.5 MB of JSON, mostly the database's chunk list. */
export function draftSnapshot(draft: SnapshotDraft): { write(storage: Storage, keys: MasterKeys, totals: SnapshotTotals): Promise<{ id: string; snapshot: Snapshot }> } {
  const json = JSON.stringify(draft);
  if (!json.endsWith('}')) throw new Error('a snapshot draft must be an object');
  const head = deflateRawAsync(Buffer.from(json.slice(0, -1)), { finishFlush: zc.Z_SYNC_FLUSH });
  head.catch(() => undefined);
  return {
    async write(storage, keys, totals) {
      const tail = deflateRawSync(`,"totals":${JSON.stringify(totals)}}`);
      const id = await storeSnapshot(storage, keys, [await head, tail]);
      return { id, snapshot: { ...draft, totals } };
    },
  };
}

export async function readSnapshot(storage: Storage, keys: MasterKeys, id: string): Promise<Snapshot> {
  const sealed = await storage.read('snapshots', id);
  if (sha256(sealed).toString('hex') !== id) throw new Error(`snapshot ${id.slice(0, 8)} is damaged: its content does not match its name`);
  let plain: Buffer;
  try {
    plain = inflateRawSync(open(keys.encryption, sealed, SNAPSHOT_AAD));
  } catch {
    throw new Error(`snapshot ${id.slice(0, 8)} is damaged: it cannot be decrypted`);
  }
  const snap = JSON.parse(plain.toString('utf8')) as Snapshot;
  if (snap.version !== 1) throw new Error(`snapshot ${id.slice(0, 8)} has unknown version ${String(snap.version)}`);
  return snap;
}

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
  return storeSnapshot(storage, keys, jsonPieces(JSON.stringify(snap)).map((p, i, all) => deflateRawSync(p.text, pieceOptions(p.store, i === all.length - 1))));
}

/** A chunk list at least this long (in base64) is stored, not compressed (jsonPieces). */
const STORED_LIST = 64 * 1024;
const CONTENT_KEY = '"content":"';

/** A snapshot's JSON in pieces for deflate: the long chunk lists (a database's: base64 of ~50,000 random ids,
 * 2.1 MB of the bench snapshot's 2.5) to store as they are, the rest to compress. Deflate shrank such a list by
 * only ~25%, at ~30 MB/s, and inflating it ran at ~180 MB/s: level 6 took 81 ms to write a bench snapshot and
 * 13.5 ms to read it; its pieces 13 and ~3 ms, for 0.5 MB more on the drive per backup. */
function jsonPieces(json: string): Array<{ text: string; store: boolean }> {
  const out: Array<{ text: string; store: boolean }> = [];
  let from = 0;
  // Found with indexOf, not a regular expression: matching a 2 MB run with one held ~25 MB of backtracking state
  // for a moment, at the end of a backup, where its memory peaks. A chunk list is base64, with no quote in it.
  for (let key = json.indexOf(CONTENT_KEY); key >= 0; key = json.indexOf(CONTENT_KEY, key + 1)) {
    const start = key + CONTENT_KEY.length;
    const end = json.indexOf('"', start);
    if (end < 0) break;
    if (end - start < STORED_LIST) continue;
    out.push({ text: json.slice(from, start), store: false }, { text: json.slice(start, end), store: true });
    from = end;
    key = end;
  }
  out.push({ text: json.slice(from), store: false });
  return out;
}

/** Each piece is a raw deflate stream of its own; all but the last end at a byte boundary (Z_SYNC_FLUSH), so that
 * laid end to end they are one stream (FORMAT.md). */
function pieceOptions(store: boolean, last: boolean): { level: number; finishFlush: number } {
  return { level: store ? zc.Z_NO_COMPRESSION : zc.Z_DEFAULT_COMPRESSION, finishFlush: last ? zc.Z_FINISH : zc.Z_SYNC_FLUSH };
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
 * in pieces (jsonPieces) on the thread pool, ending at a byte boundary (Z_SYNC_FLUSH). `write` then compresses the
 * totals on their own and appends them: raw deflate streams laid end to end are one (as pigz makes them), so the
 * file reads as writeSnapshot's does, to the same JSON. At the end of a second backup this had taken ~55 ms of the
 * main thread for ~2.5 MB of JSON, mostly the database's chunk list. */
export function draftSnapshot(draft: SnapshotDraft): { write(storage: Storage, keys: MasterKeys, totals: SnapshotTotals): Promise<{ id: string; snapshot: Snapshot }> } {
  const json = JSON.stringify(draft);
  if (!json.endsWith('}')) throw new Error('a snapshot draft must be an object');
  const head = Promise.all(jsonPieces(json.slice(0, -1)).map((p) => deflateRawAsync(p.text, pieceOptions(p.store, false))));
  head.catch(() => undefined);
  return {
    async write(storage, keys, totals) {
      const tail = deflateRawSync(`,"totals":${JSON.stringify(totals)}}`);
      const id = await storeSnapshot(storage, keys, [...(await head), tail]);
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

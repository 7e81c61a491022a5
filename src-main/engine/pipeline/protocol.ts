// Messages between the main thread and engine workers (structured-clone friendly: no classes, Buffers arrive
// as Uint8Array).
import type { SharedIdTable } from '../vault/id-table.js';
import { allStoredAsIs, type BlobRefs } from '../vault/pack.js';

export interface WorkerInit {
  location: string;
  encryptionKey: Uint8Array;
  idKey: Uint8Array;
  packSize: number;
  /** How files are cut; a file of at most `whole` bytes is one chunk (absent: every file is cut). */
  cdc: { min: number; avg: number; max: number; whole?: number };
  /** The vault's format allows groups of small chunks, and names packs by their tail (format 2). */
  groups: boolean;
  packNaming: 'tail' | 'content';
  /** Data blobs are sealed with their chunk's id in the aad (format 3). */
  boundIds: boolean;
  /** Groups hold each member's id before its bytes (format 4, IdGroup). */
  idGroups: boolean;
  /** Chunk ids already in the vault, so a backup does not store them again: one table in shared memory for all
   * workers (MasterIndex.sharedIds). */
  knownIds?: SharedIdTable;
}

/** Cut [offset, offset+length) of a file (all of it from offset when length is undefined) into chunks. */
export interface ChunkJob {
  kind: 'chunk';
  path: string;
  /** An open descriptor of `path` to read instead of opening it: a database read in place, whose descriptor must stay
   * open until its read lock is released (startSqliteCopy). Not closed by the worker. */
  fd?: number;
  offset: number;
  length?: number;
  /** Fixed chunk size (database pages); content-defined chunking when absent. */
  fixed?: number;
  /** Store small new chunks in groups (a database; where the vault's format allows it). */
  group?: boolean;
}

/** Run a command and store its standard output, cut by content-defined chunking with these parameters. The
 * environment carries the connection (and possibly a password): it is never logged or put on a command line. */
export interface CommandJob {
  kind: 'command';
  command: string;
  args: string[];
  env: Record<string, string | undefined>;
  cdc: { min: number; avg: number; max: number };
}

/** Write the chunks it lists (BlobRefs), one after the other, into the existing file at `path` from `fileOffset`. */
export interface RestoreJob extends BlobRefs {
  kind: 'restore';
  path: string;
  fileOffset: number;
  /** A file written whole by this one job: the worker creates it (it must not exist; mode 0600 until it is
   * written), writes it, and gives it this mode and modification time. The caller makes it durable. Without it, the
   * file exists and is written in place. */
  create?: { mode: number; mtimeMs: number };
  /** Written through the page cache: the restore reads the file again at once (a database's integrity check, which
   * reads it a page at a time). Other files' long stretches bypass it (decision 0029). */
  cached?: boolean;
}

/** A restore job whose chunks are all stored as they are (a photo's) is streamed from its packs to its file, and
 * waits mostly for the disk: each worker runs one such job beside its other jobs (decision 0036). */
export function isStreamed(job: WorkerJob): boolean {
  return job.kind === 'restore' && allStoredAsIs(job);
}

/** A job as the pool sends it to a worker. `streamed`: isStreamed(job), worked out once, by the pool, which gives such
 * jobs a lane of their own; the worker runs them in a queue of their own. */
export interface JobMessage {
  jobId: number;
  job: WorkerJob;
  streamed: boolean;
}

export interface RestoreJobResult {
  bytes: number;
  /** Written past the page cache. */
  directBytes: number;
}

export interface VerifyJob {
  kind: 'verify';
  packId: string;
  /** The index's entries for this pack, in the pack-header layout. */
  blobs: Uint8Array;
}

export type WorkerJob = ChunkJob | CommandJob | RestoreJob | VerifyJob | { kind: 'flush' } | { kind: 'sqlite-check'; path: string; quick: boolean }
  | { kind: 'sqlite-copy'; source: string; path: string };

export interface ChunkResult {
  ids: Uint8Array;
  bytesRead: number;
  chunksNew: number;
  bytesNew: number;
}

export interface VerifyResult {
  bytes: number;
  hashOk: boolean;
  headerOk: boolean;
  bad: string[];
  chunks: number;
}

export interface SqliteCheckResult {
  integrityCheck: string;
  tables: Record<string, number>;
}

export interface JobError {
  message: string;
  code?: string;
  /** The error came from reading a source file (skip that file), not from the vault. */
  source: boolean;
  /** A chunk failed authentication or is missing. */
  integrity: boolean;
}

export type JobValue = { pageSize: number; size: number } | ChunkResult | VerifyResult | SqliteCheckResult | RestoreJobResult | Record<string, never>;

export type JobReply =
  | { type: 'result'; jobId: number; ok: true; value: JobValue }
  | { type: 'result'; jobId: number; ok: false; error: JobError };

/** A pack became durable in the vault. header: its entries in the pack-header layout. */
export interface PackEvent {
  type: 'pack';
  id: string;
  size: number;
  header: Uint8Array;
}

export type WorkerEvent = PackEvent | JobReleased;

/** The job no longer needs the worker's CPU (a restore job whose last writes are under way): the worker takes its next
 * job meanwhile, and the job's result follows once it is complete (decision 0029). */
export interface JobReleased {
  type: 'released';
  jobId: number;
}

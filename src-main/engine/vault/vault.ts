// A vault: a folder holding a plaintext config.json and encrypted keys, packs, index files and snapshots.
// This module creates and opens vaults and gives the layers above what they need (keys, storage, index, snapshots).
import { randomUUID } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { UsageError, VaultNotFoundError, ClinicVaultError, DamageError, cannotMakeFolder } from '../errors.js';
import { scryptParamsProblem } from './crypto.js';
import { generateRecoveryKey, makePassphraseSlot, makeRecoverySlot, generateMasterKeys, unlock, writeSlot, defaultScrypt, checkNewPassphrase, type MasterKeys, type Secret } from './keys.js';
import { LocalStorage, makeFolderPath } from './storage.js';
import type { PackNaming } from './pack.js';
import { MasterIndex } from './index-file.js';
import { IndexCache } from './index-cache.js';
import { SnapshotCache } from './snapshot-cache.js';
import { readSnapshot, type Snapshot } from './snapshot.js';
import { validateStoredPolicy, type RetentionPolicy } from '../retention.js';
import { VaultLock } from './lock.js';

export const FORMAT_NAME = 'clinicvault-vault';
export const FORMAT_VERSION = 4;

/** What a vault's format says writers use and readers expect. Format 2: small database chunks stored in groups,
 * packs named by their tail. Format 3: each data blob's chunk id is in its aad (`boundIds`, pack.ts dataBlobAad).
 * Format 4: each group holds its members' ids before their bytes (`idGroups`, pack.ts IdGroup). A vault is written
 * in its own format, so the ClinicVault that made it can still read it. */
export function formatFeatures(config: Pick<VaultConfig, 'version'>): { groups: boolean; packNaming: PackNaming; boundIds: boolean; idGroups: boolean } {
  return { groups: config.version >= 2, packNaming: config.version >= 2 ? 'tail' : 'content', boundIds: config.version >= 3, idGroups: config.version >= 4 };
}

export interface VaultConfig {
  format: typeof FORMAT_NAME;
  version: number;
  id: string;
  created: string;
  kdf: { name: 'scrypt'; N: number; r: number; p: number };
  chunking: {
    /** `whole`: a file of at most this many bytes is stored as one chunk, not cut (vaults made before it existed
     * cut every file; see decision 0020). */
    files: { algorithm: 'fastcdc-2020'; min: number; avg: number; max: number; whole?: number };
    sqlite: { algorithm: 'pages'; minBytes: number };
    /** Database dumps (pg_dump output); vaults made before this existed use DEFAULT_DUMP_CHUNKING. */
    dumps?: { algorithm: 'fastcdc-2020'; min: number; avg: number; max: number };
  };
  packSize: number;
  /** This destination's retention policy (a local vault keeps weeks, an offsite drive months); default if absent. */
  retention?: RetentionPolicy & { timeZone?: string };
}

/** Small content-defined chunks for dumps: a changed row moves in the dump, and small chunks keep the rest equal. */
export const DEFAULT_DUMP_CHUNKING = { algorithm: 'fastcdc-2020', min: 2 * 1024, avg: 8 * 1024, max: 64 * 1024 } as const;

export function defaultConfig(): VaultConfig {
  return {
    format: FORMAT_NAME,
    version: FORMAT_VERSION,
    id: randomUUID(),
    created: new Date().toISOString(),
    kdf: { name: 'scrypt', ...defaultScrypt() },
    chunking: {
      files: { algorithm: 'fastcdc-2020', min: 512 * 1024, avg: 1024 * 1024, max: 8 * 1024 * 1024, whole: 8 * 1024 * 1024 },
      sqlite: { algorithm: 'pages', minBytes: 4096 },
      dumps: DEFAULT_DUMP_CHUNKING,
    },
    packSize: 16 * 1024 * 1024,
  };
}

const MiB = 1024 * 1024;

/** Why config.json's settings for writing (chunk sizes, pack size, new key files' scrypt) cannot be used, or
 * undefined. The file is plaintext on the drive: a damaged or hand-edited value must stop a writer with a clear
 * message, not hang it (a largest chunk of 0 made a backup cut empty chunks for ever). The ranges hold every value
 * ClinicVault has written, with room around them. */
function writerConfigProblem(config: VaultConfig): string | undefined {
  const isInt = (v: unknown, lo: number, hi: number): boolean => Number.isInteger(v) && (v as number) >= lo && (v as number) <= hi;
  const cdcProblem = (name: string, c: Partial<{ algorithm: string; min: number; avg: number; max: number }> | undefined): string | undefined => {
    if (typeof c !== 'object' || c === null || c.algorithm !== 'fastcdc-2020') return `chunking.${name}.algorithm is not "fastcdc-2020"`;
    const { min, avg, max } = c;
    if (!isInt(min, 64, 16 * MiB) || !isInt(avg, 64, 16 * MiB) || !isInt(max, 64, 16 * MiB) || min! > avg! || avg! > max!) {
      return `chunking.${name} needs whole numbers with 64 <= min <= avg <= max <= 16777216 (it has min ${String(min)}, avg ${String(avg)}, max ${String(max)})`;
    }
    return undefined;
  };
  const ch = config.chunking as Partial<VaultConfig['chunking']> | undefined;
  if (typeof ch !== 'object' || ch === null) return 'it has no "chunking" settings';
  const files = cdcProblem('files', ch.files);
  if (files) return files;
  if (ch.files!.whole !== undefined && !isInt(ch.files!.whole, 0, Number.MAX_SAFE_INTEGER)) return `chunking.files.whole is ${String(ch.files!.whole)}, not a whole number of bytes`;
  if (ch.dumps !== undefined) {
    const dumps = cdcProblem('dumps', ch.dumps);
    if (dumps) return dumps;
  }
  if (ch.sqlite?.algorithm !== 'pages' || !isInt(ch.sqlite.minBytes, 0, 16 * MiB)) return 'chunking.sqlite needs "algorithm": "pages" and minBytes from 0 to 16777216';
  if (!isInt(config.packSize, MiB, 1024 * MiB)) return `packSize is ${String(config.packSize)}, not a whole number from 1048576 to 1073741824`;
  const kdf = config.kdf as Partial<VaultConfig['kdf']> | undefined;
  if (kdf?.name !== 'scrypt') return 'kdf.name is not "scrypt"';
  const scrypt = scryptParamsProblem({ N: kdf.N!, r: kdf.r!, p: kdf.p! });
  return scrypt ? `kdf's ${scrypt}` : undefined;
}

export interface SnapshotListing {
  id: string;
  snapshot: Snapshot;
}

export interface SnapshotList {
  snapshots: SnapshotListing[];
  damaged: Array<{ id: string; message: string }>;
  superseded: string[];
  latestFull?: SnapshotListing;
}

export class Vault {
  private constructor(
    readonly location: string,
    readonly storage: LocalStorage,
    readonly config: VaultConfig,
    readonly keys: MasterKeys,
  ) {}

  get id(): string {
    return this.config.id;
  }

  static async init(location: string, passphrase: string): Promise<{ vault: Vault; recoveryKey: string }> {
    checkNewPassphrase(passphrase);
    const loc = path.resolve(location);
    await makeFolderPath(loc).catch((err: unknown) => {
      throw cannotMakeFolder('vault folder', loc, err);
    });
    const existing = (await fsp.readdir(loc)).filter((f) => !f.startsWith('.'));
    if (existing.includes('config.json')) throw new UsageError(`There is already a vault at ${loc}. Nothing was changed.`);
    if (existing.length > 0) {
      throw new UsageError(`The folder ${loc} is not empty. Choose an empty folder (or a new one) for the vault so nothing in it is mixed up or overwritten.`);
    }
    const storage = new LocalStorage(loc);
    for (const d of ['keys', 'data', 'index', 'snapshots', 'locks']) await fsp.mkdir(path.join(loc, d), { recursive: true });
    const config = defaultConfig();
    const keys = generateMasterKeys();
    const recovery = generateRecoveryKey();
    await writeSlot(storage, await makePassphraseSlot(keys, passphrase, config.kdf));
    await writeSlot(storage, makeRecoverySlot(keys, recovery.bytes));
    // config.json last: a folder without it is not (yet) a vault.
    await storage.write('config', 'config.json', Buffer.from(JSON.stringify(config, null, 2) + '\n'));
    return { vault: new Vault(loc, storage, config, keys), recoveryKey: recovery.text };
  }

  static async readConfig(location: string): Promise<VaultConfig> {
    const loc = path.resolve(location);
    let raw: string;
    try {
      raw = await fsp.readFile(path.join(loc, 'config.json'), 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const folderExists = await fsp.stat(loc).then(() => true, () => false);
      if (!folderExists) {
        throw new VaultNotFoundError(`The vault folder ${loc} does not exist. If it is on an external drive, plug the drive in and try again.`);
      }
      if (code === 'ENOENT') throw new VaultNotFoundError(`${loc} is not a ClinicVault vault (it has no config.json). Check the folder, or create a vault there with "clinicvault init".`);
      if (code === 'ENOTDIR') throw new VaultNotFoundError(`${loc} is a file, not a vault folder. Give the folder that holds the vault (the one with config.json in it).`);
      throw new ClinicVaultError(`Cannot read ${path.join(loc, 'config.json')}: ${(err as Error).message}`);
    }
    let config: VaultConfig;
    try {
      config = JSON.parse(raw) as VaultConfig;
    } catch {
      throw new DamageError(`The vault's config.json at ${loc} is damaged (not valid JSON). Restore it from another copy of the vault.`);
    }
    if (typeof config !== 'object' || config === null || config.format !== FORMAT_NAME) throw new VaultNotFoundError(`${loc} is not a ClinicVault vault.`);
    if (!Number.isInteger(config.version) || config.version < 1 || typeof config.id !== 'string' || config.id === '') {
      throw new DamageError(`The vault's config.json at ${loc} is damaged (its "version" or "id" is missing or not valid). Restore it from another copy of the vault.`);
    }
    if (config.version > FORMAT_VERSION) {
      throw new ClinicVaultError(`This vault uses format version ${config.version}, newer than this ClinicVault understands (${FORMAT_VERSION}). Update ClinicVault.`);
    }
    return config;
  }

  /** `cacheDir`: a folder on this computer where the vault's index and its list of backups are cached
   * (index-cache.ts, snapshot-cache.ts); without it, every command reads the index files and every snapshot. */
  static async open(location: string, secret: Secret, opts: { cacheDir?: string } = {}): Promise<Vault> {
    const loc = path.resolve(location);
    const config = await Vault.readConfig(loc);
    const storage = new LocalStorage(loc);
    const { keys } = await unlock(storage, secret);
    const vault = new Vault(loc, storage, config, keys);
    if (opts.cacheDir) {
      vault.indexCache = new IndexCache(opts.cacheDir, config.id);
      vault.snapshotCache = new SnapshotCache(opts.cacheDir, config.id);
    }
    return vault;
  }

  /** config.json's settings for writing, checked (writerConfigProblem) before a backup, prune, erase or key change.
   * Restore and verify do not use them, so they still work with the file damaged. */
  checkWriterConfig(): void {
    const problem = writerConfigProblem(this.config);
    if (!problem) return;
    throw new DamageError(
      `The vault's config.json at ${path.join(this.location, 'config.json')} is damaged: ${problem}. Nothing was written to the vault, and its backups still restore and verify. Before it can take new backups the file must be corrected (docs/FORMAT.md gives its usual values): ask whoever looks after ClinicVault, or back up to a new vault meanwhile.`,
    );
  }

  /** The local cache of this vault's list of backups, if it was opened with one. */
  snapshotCache: SnapshotCache | undefined;

  /** The local cache of this vault's index, if it was opened with one. */
  indexCache: IndexCache | undefined;

  /** Set (or, with undefined, remove) this vault's retention policy in config.json, under the writer lock. */
  async setRetention(policy: (RetentionPolicy & { timeZone?: string }) | undefined, log?: (m: string) => void): Promise<void> {
    if (policy) {
      try {
        validateStoredPolicy(policy);
      } catch (err) {
        throw new UsageError(`Cannot use this retention policy: ${(err as Error).message}.`);
      }
    }
    const lock = await VaultLock.acquire(this.storage, 'policy', log);
    try {
      const next: VaultConfig = { ...this.config };
      if (policy) next.retention = policy;
      else delete next.retention;
      await this.storage.write('config', 'config.json', Buffer.from(JSON.stringify(next, null, 2) + '\n'));
      this.config.retention = next.retention;
      if (!policy) delete this.config.retention;
    } finally {
      await lock.release().catch(() => undefined);
    }
  }

  /** This vault's own retention policy, checked; undefined when it has none. A malformed one is reported here, when
   * a policy is needed, and never stops a backup or a restore. */
  retentionPolicy(): (RetentionPolicy & { timeZone?: string }) | undefined {
    const r = this.config.retention;
    if (r === undefined) return undefined;
    try {
      validateStoredPolicy(r);
      return r;
    } catch (err) {
      throw new UsageError(
        `The retention policy in ${path.join(this.location, 'config.json')} is not valid (${(err as Error).message}). Set it again with "clinicvault policy --vault ${this.location} --keep-...".`,
      );
    }
  }

  /** The vault's index: from the local cache when it is for the vault's current index files. With `checkFiles`
   * (verify, test-restore and prune, which prove or change what is on the drive), only once every index file is
   * proved intact; a damaged one is then read and reported as without a cache. */
  loadIndex(opts: { recoverOrphans?: boolean; checkFiles?: boolean } = {}): Promise<MasterIndex> {
    return MasterIndex.load(this.storage, this.keys, { ...opts, cache: this.indexCache });
  }

  readSnapshot(id: string): Promise<Snapshot> {
    return readSnapshot(this.storage, this.keys, id);
  }

  /** All readable snapshots, oldest first; unreadable ones are returned in `damaged`. A snapshot that a rewrite
   * (erase, tag) replaced but that still exists, because the rewrite was interrupted, is left out and named in
   * `superseded`: the rewrite stands for it. With `entries: false` the sources' file lists and the audit records
   * are left empty; `each` still sees every snapshot whole, one at a time as it is read (superseded ones too: check
   * `superseded`), and `latestFull` is the newest snapshot whole, so that a caller who needs its files does not
   * read it twice.
   * `cached` (with `entries: false`, without `each`): the listings of snapshots listed before come from the local
   * cache, and only new snapshots and the newest are read; `damaged` then names only unreadable new ones, and a
   * caller must expect an older snapshot it reads to fail (backup and restore, which read the one they need). */
  async listSnapshots(opts: { entries?: boolean; each?: (s: SnapshotListing) => void; cached?: boolean } = {}): Promise<SnapshotList> {
    if (opts.cached && opts.entries === false && !opts.each && this.snapshotCache) {
      const listed = await this.listFromCache(this.snapshotCache);
      if (listed) return listed;
    }
    let snapshots: SnapshotListing[] = [];
    const damaged: Array<{ id: string; message: string }> = [];
    let latestFull: SnapshotListing | undefined;
    for (const id of await this.storage.list('snapshots')) {
      let snapshot: Snapshot;
      try {
        snapshot = await this.readSnapshot(id);
      } catch (err) {
        damaged.push({ id, message: (err as Error).message });
        continue;
      }
      const full = { id, snapshot };
      opts.each?.(full);
      if (opts.entries !== false) {
        snapshots.push(full);
        continue;
      }
      // Without entries a listing is a few KB per backup instead of several MB (a 200 MB database alone lists
      // 50,000 chunk ids): callers that need the files of one or each backup read it again when they need it.
      snapshots.push({ id, snapshot: withoutEntries(snapshot) });
      if (!latestFull || newerFirst(full, latestFull) < 0) latestFull = full;
    }
    const replaced = new Set(snapshots.map((s) => s.snapshot.rewrittenFrom).filter((x): x is string => !!x));
    const superseded = snapshots.filter((s) => replaced.has(s.id)).map((s) => s.id);
    snapshots = snapshots.filter((s) => !replaced.has(s.id));
    snapshots.sort((a, b) => -newerFirst(a, b));
    if (opts.entries !== false) latestFull = snapshots[snapshots.length - 1];
    else if (latestFull && replaced.has(latestFull.id)) latestFull = undefined;
    return { snapshots, damaged, superseded, latestFull };
  }

  /** listSnapshots({ entries: false }) through the local cache; the cache is brought up to date with what the vault
   * lists. Undefined if the newest snapshot cannot be read: the caller lists without the cache, which reports it. */
  private async listFromCache(cache: SnapshotCache): Promise<SnapshotList | undefined> {
    const ids = await this.storage.list('snapshots');
    const cached = await cache.read(this.keys);
    const listed = new Map<string, Snapshot>();
    const read = new Map<string, Snapshot>();
    const damaged: Array<{ id: string; message: string }> = [];
    for (const id of ids) {
      const hit = cached.get(id);
      if (hit) {
        listed.set(id, hit);
        continue;
      }
      try {
        const snapshot = await this.readSnapshot(id);
        read.set(id, snapshot);
        listed.set(id, withoutEntries(snapshot));
      } catch (err) {
        damaged.push({ id, message: (err as Error).message });
      }
    }
    // A cache that cannot be written (a full disk) only means reading the snapshots again next time.
    if (read.size > 0 || listed.size !== cached.size) await cache.write(this.keys, listed).catch(() => undefined);
    const replaced = new Set([...listed.values()].map((s) => s.rewrittenFrom).filter((x): x is string => !!x));
    const snapshots = [...listed].filter(([id]) => !replaced.has(id)).map(([id, snapshot]) => ({ id, snapshot }));
    snapshots.sort((a, b) => -newerFirst(a, b));
    const newest = snapshots[snapshots.length - 1];
    let latestFull: SnapshotListing | undefined;
    if (newest) {
      const whole = read.get(newest.id) ?? (await this.readSnapshot(newest.id).catch(() => undefined));
      if (!whole) return undefined;
      latestFull = { id: newest.id, snapshot: whole };
    }
    return { snapshots, damaged, superseded: [...listed.keys()].filter((id) => replaced.has(id)), latestFull };
  }

  /** Resolve "latest", a full id or a unique prefix (at least 4 characters). */
  async resolveSnapshot(ref: string | undefined): Promise<SnapshotListing> {
    const { snapshots, latestFull } = await this.listSnapshots({ entries: false, cached: true });
    const full = async (s: SnapshotListing): Promise<SnapshotListing> => {
      if (s.id === latestFull?.id) return latestFull;
      // Listed from the cache, it may have been damaged since.
      const snapshot = await this.readSnapshot(s.id).catch(() => {
        throw new DamageError(`Snapshot ${s.id.slice(0, 8)} is damaged and cannot be read. Run "clinicvault verify" for details.`);
      });
      return { id: s.id, snapshot };
    };
    if (snapshots.length === 0) throw new UsageError('This vault has no backups yet.');
    if (!ref || ref === 'latest') return full(snapshots[snapshots.length - 1]!);
    if (!/^[0-9a-f]{4,64}$/.test(ref)) throw new UsageError(`"${ref}" is not a snapshot id. Use "latest" or an id shown by "clinicvault snapshots".`);
    const hits = snapshots.filter((s) => s.id.startsWith(ref));
    if (hits.length === 1) return full(hits[0]!);
    if (hits.length > 1) throw new UsageError(`"${ref}" matches ${hits.length} snapshots; give more characters of the id.`);
    const exists = await this.storage.list('snapshots').then((l) => l.some((n) => n.startsWith(ref)));
    if (exists) throw new DamageError(`Snapshot ${ref} exists but is damaged and cannot be read. Run "clinicvault verify" for details.`);
    throw new UsageError(`No snapshot with id ${ref} in this vault. "clinicvault snapshots" lists them.`);
  }
}

/** A snapshot as listed without its file lists and its audit records (each snapshot carries the whole audit history
 * up to its backup, so a list with them would grow with the number of backups times the length of that history). */
function withoutEntries(snapshot: Snapshot): Snapshot {
  return { ...snapshot, sources: snapshot.sources.map((src) => ({ ...src, entries: [] })), audit: [] };
}

/** Negative when a is newer than b: by time, then by id (the order listSnapshots returns, reversed). Times are ISO
 * 8601 in UTC and ids hex, so plain code-unit order is their order; localeCompare gave the same answer but its
 * first call loads ICU's collator, ~10 ms of every command. */
function newerFirst(a: SnapshotListing, b: SnapshotListing): number {
  return ordinal(b.snapshot.time, a.snapshot.time) || ordinal(b.id, a.id);
}

function ordinal(x: string, y: string): number {
  return x < y ? -1 : x > y ? 1 : 0;
}

// Verify: prove the vault can be restored. The quick check reads every snapshot and index and confirms that each
// chunk a snapshot needs is indexed and its pack is present at the right size. --read-data also reads every pack,
// checks its checksum and authenticates, decompresses and re-hashes every chunk. Damage is reported as what it
// affects: which pack, which snapshots, which files.
import { EnginePool } from './pipeline/pool.js';
import type { VerifyResult } from './pipeline/protocol.js';
import { ReadAhead } from './pipeline/read-ahead.js';
import { collectGarbage } from './pipeline/young-generation.js';
import type { MasterIndex } from './vault/index-file.js';
import { headerCheckWork } from './vault/pack.js';
import { ID_BYTES, decodeContent, type SnapshotSource, type TreeEntry } from './vault/snapshot.js';
import type { SnapshotListing, Vault } from './vault/vault.js';

export interface VerifyProgress {
  packsDone: number;
  packsTotal: number;
  bytesDone: number;
  bytesTotal: number;
}

export interface Problem {
  kind: 'pack' | 'index' | 'snapshot' | 'missing';
  /** Short name of the damaged file (pack/index/snapshot id), when there is one. */
  file?: string;
  message: string;
  affectedSnapshots: string[];
  affectedFiles: string[];
}

export interface VerifyReport {
  ok: boolean;
  readData: boolean;
  /** When only a share was read: which group of how many, and how many packs that was. */
  subset?: { group: number; of: number; packsRead: number };
  snapshots: number;
  packs: number;
  chunksChecked: number;
  bytesRead: number;
  unreferencedPacks: number;
  problems: Problem[];
  durationMs: number;
}

export interface VerifyOptions {
  readData?: boolean;
  /** Read only the packs of one of `of` groups (a pack's group: first 32 bits of its id mod `of`). Reading group
   * 0, 1, ..., of-1 on successive runs reads the whole vault once per cycle. Implies readData. */
  subset?: { group: number; of: number };
  onProgress?: (p: VerifyProgress) => void;
  signal?: AbortSignal;
}

const short = (id: string): string => id.slice(0, 8);

export async function verify(vault: Vault, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const t0 = performance.now();
  const readData = !!opts.readData || !!opts.subset;
  // The workers start first: they boot while this thread loads the index, and they read packs while it walks the
  // backups' file lists (~0.4 s of the bench vault's 4 s verify were spent before the first read).
  const pool = readData ? new EnginePool(vault.location, vault.keys, vault.config) : undefined;
  opts.signal?.addEventListener('abort', () => void pool?.close(), { once: true });
  try {
    return await verifyWith(vault, opts, pool, t0);
  } finally {
    await pool?.close();
  }
}

async function verifyWith(vault: Vault, opts: VerifyOptions, pool: EnginePool | undefined, t0: number): Promise<VerifyReport> {
  const problems: Problem[] = [];
  // The index files are part of what is checked: each must hash to its name and decrypt before the cache stands
  // for them (a damaged one is read and reported).
  const index = await vault.loadIndex({ checkFiles: true });
  // Problems whose affected backups and files are filled in at the end, in one more pass over the backups.
  const toAnnotate: Array<{ problem: Problem; chunks: Set<string> }> = [];
  const withAffects = (problem: Problem, chunks: Set<string>): Problem => {
    toAnnotate.push({ problem, chunks });
    return problem;
  };
  for (const p of index.problems) {
    problems.push({
      kind: p.kind,
      file: p.file,
      message:
        p.kind === 'index'
          ? `${p.message}. Its packs were re-read from their own headers, so backups stay restorable; the next backup writes a fresh index.`
          : p.message,
      affectedSnapshots: [],
      affectedFiles: [],
    });
  }
  const packProblems: Problem[] = [];
  const markPack = (packId: string, why: string, chunks?: Set<string>): void => {
    const all = new Set((index.packs.get(packId)?.blobs ?? []).map((b) => b.id.toString('hex')));
    const part = chunks && chunks.size < all.size ? ` (${chunks.size} of ${all.size} chunks cannot be read)` : '';
    packProblems.push(withAffects({ kind: 'pack', file: packId, message: `pack ${packId.slice(0, 12)} is damaged: ${why}${part}`, affectedSnapshots: [], affectedFiles: [] }, chunks ?? all));
  };

  // 1. Every listed pack on the drive at its full size; with readData, its reading is queued at once.
  const storedPacks = new Set(await vault.storage.list('data'));
  const inSubset = (packId: string): boolean => !opts.subset || Number.parseInt(packId.slice(0, 8), 16) % opts.subset.of === opts.subset.group;
  const packIds = [...index.packs.keys()];
  const sizes = await Promise.all(packIds.map((id) => (storedPacks.has(id) ? vault.storage.size('data', id) : -1)));
  const bytesTotal = pool ? packIds.filter(inSubset).reduce((a, id) => a + packLength(index, id), 0) : 0;
  const progress: VerifyProgress = { packsDone: 0, packsTotal: packIds.length, bytesDone: 0, bytesTotal };
  let chunksChecked = 0;
  let bytesRead = 0;
  const absent: string[] = [];
  const toRead: string[] = [];
  packIds.forEach((packId, i) => {
    opts.signal?.throwIfAborted();
    const size = sizes[i]!;
    if (size < 0) {
      absent.push(packId);
      return;
    }
    const minSize = packLength(index, packId) + 4;
    if (size < minSize) {
      markPack(packId, `the file is truncated (${size} bytes, at least ${minSize} expected)`);
      return;
    }
    if (!pool || !inSubset(packId)) {
      progress.packsDone++;
      opts.onProgress?.({ ...progress });
      return;
    }
    toRead.push(packId);
  });
  // Workers read each pack whole, check its checksum and header, and authenticate every chunk in it. The costliest
  // go first: a pack of database pages takes ~10x as long as one of photos, and one queued last kept a core busy
  // alone for ~0.3 s at the end of the bench vault's verify.
  const work = new Map(toRead.map((id) => [id, headerCheckWork(index.packs.get(id)!.header)]));
  toRead.sort((a, b) => work.get(b)! - work.get(a)!);
  const ahead = new ReadAhead(vault.storage);
  const workers = pool;
  const reads = !workers ? [] : toRead.map((packId) => {
    ahead.queued([packId]);
    const read = workers.run<VerifyResult>({ kind: 'verify', packId, blobs: new Uint8Array(index.packs.get(packId)!.header) }).then((r) => {
      ahead.done();
      bytesRead += r.bytes;
      chunksChecked += r.chunks;
      if (r.bad.length > 0) markPack(packId, 'some of its contents fail authentication', new Set(r.bad));
      else if (!r.hashOk || !r.headerOk) {
        packProblems.push({
          kind: 'pack',
          file: packId,
          message: `pack ${packId.slice(0, 12)} is damaged: ${r.headerOk ? 'its checksum does not match' : 'its header cannot be read'}, although every chunk in it still reads correctly; no backup is affected`,
          affectedSnapshots: [],
          affectedFiles: [],
        });
      }
      progress.bytesDone += r.bytes;
      progress.packsDone++;
      opts.onProgress?.({ ...progress });
    });
    // Settled below; if verify stops before that (aborted), the pool's closing must not leave a rejection unhandled.
    read.catch(() => undefined);
    return read;
  });
  const readsDone = Promise.allSettled(reads).finally(() => ahead.stop());
  void ahead.run();

  // 2. Meanwhile: which packs hold data that backups need, and is every needed chunk indexed? The list is kept
  // without file lists; each backup's files are read one backup at a time (memory stays flat however many
  // backups the vault keeps).
  // Each backup's chunks are looked up as it is listed (reading every backup once, not twice); a backup that a
  // rewrite superseded is left out afterwards, as the listing leaves it out.
  const perSnapshot = new Map<string, { needed: Set<string>; missing: Set<string> }>();
  const { snapshots, damaged, superseded } = await vault.listSnapshots({
    entries: false,
    each: (s) => {
      const found = { needed: new Set<string>(), missing: new Set<string>() };
      for (const src of s.snapshot.sources) for (const e of src.entries) lookUpContent(index, e.content, found.needed, found.missing);
      perSnapshot.set(s.id, found);
    },
  });
  for (const id of superseded) perSnapshot.delete(id);
  if (pool) collectGarbage();
  const forEachEntry = async (fn: (s: SnapshotListing, src: SnapshotSource, e: TreeEntry) => void): Promise<void> => {
    for (const s of snapshots) {
      const full: SnapshotListing = { id: s.id, snapshot: await vault.readSnapshot(s.id) };
      for (const src of full.snapshot.sources) for (const e of src.entries) fn(full, src, e);
    }
  };
  for (const d of damaged) {
    problems.push({ kind: 'snapshot', file: d.id, message: `${d.message}. That backup cannot be restored; other backups are not affected by this.`, affectedSnapshots: [d.id], affectedFiles: [] });
  }
  const needed = new Set<string>();
  const missing = new Set<string>();
  for (const found of perSnapshot.values()) {
    for (const p of found.needed) needed.add(p);
    for (const id of found.missing) missing.add(id);
  }
  if (missing.size > 0) {
    problems.push(withAffects({ kind: 'missing', message: `${missing.size} chunk(s) that backups need are not in the vault`, affectedSnapshots: [], affectedFiles: [] }, missing));
  }
  for (const packId of absent) if (needed.has(packId)) markPack(packId, 'the file is missing from the drive');

  const settled = await readsDone;
  opts.signal?.throwIfAborted();
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  problems.push(...packProblems);
  if (toAnnotate.length > 0) await annotate(toAnnotate, snapshots, forEachEntry);
  const unreferencedPacks = [...storedPacks].filter((p) => !index.packs.has(p)).length;
  return {
    ok: problems.length === 0,
    readData: !!pool,
    subset: opts.subset ? { ...opts.subset, packsRead: packIds.filter((id) => storedPacks.has(id) && inSubset(id)).length } : undefined,
    snapshots: snapshots.length,
    packs: index.packs.size,
    chunksChecked,
    bytesRead,
    unreferencedPacks,
    problems,
    durationMs: Math.round(performance.now() - t0),
  };
}

/** Add the packs holding a file's chunks to `needed`, and the chunks no pack holds to `missing` (hex). */
function lookUpContent(index: MasterIndex, content: string | undefined, needed: Set<string>, missing: Set<string>): void {
  if (!content) return;
  const ids = Buffer.from(content, 'base64');
  if (ids.length % ID_BYTES !== 0) throw new Error('malformed chunk list');
  for (let at = 0; at < ids.length; at += ID_BYTES) {
    const pack = index.packOf(ids, at);
    if (pack) needed.add(pack);
    else missing.add(ids.toString('hex', at, at + ID_BYTES));
  }
}

function packLength(index: MasterIndex, packId: string): number {
  return index.packs.get(packId)?.contentBytes ?? 0;
}

/** Fill in which snapshots and files need any of the given chunks, for every problem in one pass. */
async function annotate(
  items: Array<{ problem: Problem; chunks: Set<string> }>,
  snapshots: SnapshotListing[],
  forEachEntry: (fn: (s: SnapshotListing, src: SnapshotSource, e: TreeEntry) => void) => Promise<void>,
): Promise<void> {
  const found = items.map(() => ({ snaps: new Set<string>(), files: new Set<string>() }));
  await forEachEntry((s, src, e) => {
    const ids = decodeContent(e.content).map((id) => id.toString('hex'));
    items.forEach((it, i) => {
      if (ids.some((id) => it.chunks.has(id))) {
        found[i]!.snaps.add(s.id);
        found[i]!.files.add(src.kind === 'sqlite' ? src.label : `${src.label}/${e.path}`);
      }
    });
  });
  const when = (id: string): string => snapshots.find((s) => s.id === id)?.snapshot.time ?? '';
  items.forEach(({ problem }, i) => {
    const { snaps, files } = found[i]!;
    problem.affectedSnapshots = [...snaps];
    problem.affectedFiles = [...files].sort();
    if (snaps.size > 0) {
      problem.message += `; affected backups: ${[...snaps].map((id) => `${short(id)} (${when(id)})`).join(', ')}; affected files: ${problem.affectedFiles.slice(0, 10).join(', ')}${files.size > 10 ? ` and ${files.size - 10} more` : ''}`;
    } else {
      problem.message += '; no backup needs the damaged part';
    }
  });
}

// Prune: reclaim the space of data no snapshot needs any more. Packs with nothing needed are deleted; packs that
// are mostly unneeded are repacked (their needed blobs copied, still sealed, into new packs) and then deleted.
//
// Crash safety comes from the order, each step durable before the next (FORMAT.md, "Prune"):
//   1. write the new packs;
//   2. write one new index file listing every pack that stays, and the new ones;
//   3. write obsolete/<name>.json naming the packs that go;
//   4. delete the other index files;
//   5. delete the packs that go, then the obsolete/ notes.
// Killed anywhere, the vault still holds every needed chunk in a pack some index lists: before 2 the old index
// files describe the old packs, which all still exist; after 2 the new index alone is enough, and it never lists a
// pack that step 5 deletes. Leftovers are unused and the next prune removes them: packs an obsolete/ note names,
// and new packs no index lists.
//
// Prune holds the vault's writer lock, so no backup runs meanwhile. Packs no index lists and no obsolete/ note
// names, written in the last hour, are left alone in case a backup whose lock was wrongly judged stale is still
// writing them.
import { BlobOpener, BlobType, ChunkIntegrityError, GROUP_AAD, ID_GROUP_AAD, groupPlaintext, isMember, memberSpan, type PackBlob } from './vault/pack.js';
import { compressChunk } from './vault/compress.js';
import { seal } from './vault/crypto.js';
import { PackWriter } from './pipeline/pack-writer.js';
import { writeIndexFile, type PackRecord } from './vault/index-file.js';
import { VaultLock } from './vault/lock.js';
import { formatFeatures, type Vault } from './vault/vault.js';
import { analyzeUsage } from './usage.js';
import { crashPoint } from './crash-point.js';
import { DamageError, RefusedError, formatBytes } from './errors.js';

export interface PruneOptions {
  dryRun?: boolean;
  /** Repack a pack when at least this share of its bytes is unused (default 0.3). */
  repackThreshold?: number;
  /** Repack every pack holding any unused byte (erase: no trace of the erased data may stay). */
  repackAll?: boolean;
  /** Packs no index lists, younger than this, are left alone (default one hour). */
  orphanGraceMs?: number;
  /** Count these snapshots as gone (forget --dry-run --prune: the estimate for what forget would remove). */
  assumeForgotten?: ReadonlySet<string>;
  /** A lock the caller already holds (forget --prune, erase). */
  lock?: VaultLock;
  log?: (msg: string) => void;
}

export interface PruneResult {
  dryRun: boolean;
  packsBefore: number;
  packsDeleted: number;
  packsRepacked: number;
  packsWritten: number;
  bytesBefore: number;
  bytesAfter: number;
  /** Unused bytes left in packs below the repack threshold. */
  unusedKept: number;
  /** Recent packs no index lists, left alone. */
  recentOrphansKept: number;
  durationMs: number;
}

export const DEFAULT_REPACK_THRESHOLD = 0.3;
export const ORPHAN_GRACE_MS = 60 * 60_000;

export async function prune(vault: Vault, opts: PruneOptions = {}): Promise<PruneResult> {
  const t0 = performance.now();
  const threshold = opts.repackThreshold ?? DEFAULT_REPACK_THRESHOLD;
  const grace = opts.orphanGraceMs ?? ORPHAN_GRACE_MS;
  const storage = vault.storage;
  if (!opts.dryRun) vault.checkWriterConfig();
  const ownLock = !opts.lock && !opts.dryRun ? await VaultLock.acquire(storage, 'prune', opts.log) : undefined;
  try {
    if (!opts.dryRun) await storage.removeLeftoverTemps();
    // Prune rewrites the index files, and refuses to if one is damaged: the local cache stands for them only once
    // each is intact.
    const index = await vault.loadIndex({ recoverOrphans: true, checkFiles: true });
    const badPacks = index.problems.filter((p) => p.kind === 'pack');
    if (badPacks.length > 0) {
      throw new RefusedError(
        `Prune changes nothing while the vault is damaged (${badPacks.map((p) => p.message).join('; ')}). ` +
          'Run "clinicvault verify --read-data" to see which backups are affected, and make a fresh backup to another drive.',
      );
    }
    const listing = await vault.listSnapshots({ entries: false });
    const { damaged, superseded } = listing;
    const snapshots = listing.snapshots.filter((s) => !opts.assumeForgotten?.has(s.id));
    if (damaged.length > 0) {
      throw new RefusedError(
        `Prune changes nothing while ${damaged.length} backup record(s) cannot be read (${damaged.map((d) => d.id.slice(0, 8)).join(', ')}): ` +
          'their data might be needed. Run "clinicvault verify" for details.',
      );
    }
    // Originals whose rewrite (erase, tag) is complete: the rewrite stands for them, so they go first.
    if (!opts.dryRun) for (const id of superseded) await storage.remove('snapshots', id);
    const usage = await analyzeUsage(index, snapshots, (id) => vault.readSnapshot(id));
    if (usage.missing > 0) {
      throw new RefusedError(`Prune changes nothing: ${usage.missing} chunk(s) that backups need are missing. Run "clinicvault verify" for details.`);
    }
    const onDisk = new Set(await storage.list('data'));
    const orphans = new Set(index.recoveredPacks);
    // Packs an earlier, interrupted prune already decided to delete.
    const notes = await storage.list('obsolete');
    const obsolete = new Set<string>();
    for (const name of notes) {
      try {
        for (const id of (JSON.parse((await storage.read('obsolete', name)).toString('utf8')) as { packs: string[] }).packs) obsolete.add(id);
      } catch {
        // An unreadable note only means its packs wait for the grace period like any unlisted pack.
      }
    }
    const now = Date.now();
    const keep: PackRecord[] = [];
    const remove: string[] = [];
    const repack: Array<{ id: string; used: PackBlob[] }> = [];
    let unusedKept = 0;
    let recentOrphansKept = 0;
    let bytesBefore = 0;
    for (const p of usage.packs.values()) {
      if (!onDisk.has(p.id)) {
        // Listed but not on the drive: if backups need it, that is damage for verify to report, not for prune to
        // paper over by dropping it from the index.
        if (p.used.length > 0) {
          throw new RefusedError(
            `Prune changes nothing: pack ${p.id.slice(0, 12)}, which backups need, is missing from the drive. Run "clinicvault verify" to see which backups are affected.`,
          );
        }
        continue;
      }
      const total = p.usedBytes + p.unusedBytes;
      bytesBefore += total;
      if (orphans.has(p.id) && p.used.length === 0 && !obsolete.has(p.id) && now - (await storage.modified('data', p.id)) < grace) {
        recentOrphansKept++;
        continue;
      }
      if (p.used.length === 0) remove.push(p.id);
      else if (p.unusedBytes > 0 && (opts.repackAll || p.unusedBytes >= threshold * total)) repack.push({ id: p.id, used: p.used });
      else {
        keep.push({ id: p.id, blobs: p.blobs });
        unusedKept += p.unusedBytes;
      }
    }
    const packBytes = (id: string): number => usage.packs.get(id)!.usedBytes + usage.packs.get(id)!.unusedBytes;
    const result: PruneResult = {
      dryRun: !!opts.dryRun,
      packsBefore: usage.packs.size,
      packsDeleted: remove.length,
      packsRepacked: repack.length,
      packsWritten: 0,
      bytesBefore,
      bytesAfter: bytesBefore - remove.reduce((a, id) => a + packBytes(id), 0) - repack.reduce((a, r) => a + usage.packs.get(r.id)!.unusedBytes, 0),
      unusedKept,
      recentOrphansKept,
      durationMs: 0,
    };
    const indexFiles = await storage.list('index');
    const nothingToDo = remove.length === 0 && repack.length === 0 && indexFiles.length <= 1 && !keep.some((k) => orphans.has(k.id)) && notes.length === 0;
    if (opts.dryRun || nothingToDo) return { ...result, durationMs: Math.round(performance.now() - t0) };

    // 1. Copy the needed blobs of the packs being repacked into new packs, through the same streaming writer
    //    backups use. Each chunk is authenticated first, so damage is never copied into a fresh-looking pack. Blobs
    //    and whole groups are copied sealed, as they are; a group with members no longer needed is made again
    //    from the needed ones, so nothing of the others stays (erase relies on it).
    const written: PackRecord[] = [];
    const writer = new PackWriter(
      storage,
      vault.keys,
      vault.config.packSize,
      (pack) => {
        written.push(pack);
        crashPoint('prune:pack-written');
      },
      formatFeatures(vault.config).packNaming,
    );
    const opener = new BlobOpener(vault.keys, formatFeatures(vault.config).boundIds);
    const authentic = (sealed: Buffer, b: PackBlob, packId: string): Buffer => {
      try {
        return opener.open(sealed, b, packId);
      } catch (err) {
        if (err instanceof ChunkIntegrityError) {
          throw new DamageError(`Prune stopped before deleting anything: ${err.message}. Run "clinicvault verify --read-data" for the affected backups.`);
        }
        throw err;
      }
    };
    for (const r of repack) {
      const bytes = await storage.read('data', r.id);
      for (let i = 0; i < r.used.length; ) {
        const b = r.used[i]!;
        const sealed = Buffer.from(bytes.subarray(b.offset, b.offset + b.length));
        if (!isMember(b)) {
          authentic(sealed, b, r.id);
          await writer.add({ id: b.id, type: b.type, compression: b.compression, rawLength: b.rawLength, sealed });
          i++;
          continue;
        }
        const members: PackBlob[] = [];
        const plains: Buffer[] = [];
        for (; i < r.used.length && isMember(r.used[i]!) && r.used[i]!.offset === b.offset; i++) {
          members.push(r.used[i]!);
          plains.push(authentic(sealed, r.used[i]!, r.id));
        }
        const refs = members.map((m) => ({ id: m.id, rawLength: m.rawLength }));
        // A group is made again in its own kind: an IdGroup (format 4) with the ids before the members' bytes.
        const ids = b.type === BlobType.IdMember;
        if (members.reduce((a, m) => a + memberSpan(m), 0) === b.groupRaw) {
          await writer.add({ members: refs, ids, compression: b.compression, sealed });
        } else {
          const { payload, compression } = compressChunk(groupPlaintext(members.map((m, k) => ({ id: m.id, data: plains[k]! })), ids));
          await writer.add({ members: refs, ids, compression, sealed: seal(vault.keys.encryption, payload, ids ? ID_GROUP_AAD : GROUP_AAD) });
        }
      }
    }
    await writer.finish();
    // 2. One index file for everything that stays.
    const newIndex = await writeIndexFile(storage, vault.keys, [...keep, ...written]);
    crashPoint('prune:index-written');
    // 3. A note of the packs that go, so that a prune killed from here on has its leftovers removed at once.
    const going = [...remove, ...repack.map((r) => r.id)];
    const note = `${newIndex}.json`;
    await storage.write('obsolete', note, Buffer.from(JSON.stringify({ created: new Date().toISOString(), packs: going })));
    // 4. The old index files.
    for (const name of indexFiles) {
      if (name === newIndex) continue;
      await storage.remove('index', name);
      crashPoint('prune:index-removed');
    }
    // 5. The packs that go, then the notes.
    for (const id of going) {
      await storage.remove('data', id);
      crashPoint('prune:pack-removed');
    }
    for (const name of [...notes, note]) await storage.remove('obsolete', name);
    opts.log?.(`Pruned: ${remove.length} pack(s) deleted, ${repack.length} repacked into ${written.length}; ${formatBytes(result.bytesBefore - result.bytesAfter)} freed.`);
    return { ...result, packsWritten: written.length, durationMs: Math.round(performance.now() - t0) };
  } finally {
    await ownLock?.release().catch(() => undefined);
  }
}

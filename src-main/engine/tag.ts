// Tagging a snapshot after the fact (e.g. "pre-migration"). Snapshots are content-addressed and never modified,
// so the snapshot is rewritten with the tag and `rewrittenFrom` naming the original, which is then deleted; if the
// process dies in between, readers already prefer the rewrite and the next writer deletes the original.
import { VaultLock } from './vault/lock.js';
import { writeSnapshot } from './vault/snapshot.js';
import type { SnapshotListing, Vault } from './vault/vault.js';
import { UsageError } from './errors.js';

export async function addTag(vault: Vault, snap: SnapshotListing, tag: string, log?: (m: string) => void): Promise<SnapshotListing> {
  if (!/^[\p{L}\p{N}._-]{1,64}$/u.test(tag)) throw new UsageError(`"${tag}" is not a usable tag (letters, digits, . _ and -).`);
  if (snap.snapshot.tags.includes(tag)) return snap;
  const lock = await VaultLock.acquire(vault.storage, 'tag', log);
  try {
    // Read again from the vault: the rewrite must carry every file, whatever the caller's listing held.
    const current = await vault.readSnapshot(snap.id);
    const snapshot = { ...current, tags: [...current.tags, tag], rewrittenFrom: snap.id };
    const id = await writeSnapshot(vault.storage, vault.keys, snapshot);
    await vault.storage.remove('snapshots', snap.id);
    return { id, snapshot };
  } finally {
    await lock.release().catch(() => undefined);
  }
}

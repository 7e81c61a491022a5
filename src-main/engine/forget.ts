// Forget: apply a retention policy to a vault's snapshots. Each snapshot is reported with the rules that keep it;
// the others' snapshot files are removed (under the vault's lock). Their data stays in the packs until a prune
// reclaims it, so a forget can never damage a kept snapshot.
import { applyPolicy, type Decision, type RetentionPolicy } from './retention.js';
import { VaultLock } from './vault/lock.js';
import { prune, type PruneOptions, type PruneResult } from './prune.js';
import type { SnapshotListing, Vault } from './vault/vault.js';

export interface ForgetResult {
  decisions: Array<Decision<{ id: string; time: string; tags: string[] }>>;
  forgotten: string[];
  /** Snapshots that cannot be read: never forgotten automatically (they may be the only copy of something). */
  damaged: string[];
  dryRun: boolean;
  /** With prune: what it reclaimed (or, in a dry run, would reclaim). */
  prune?: PruneResult;
}

export async function forget(vault: Vault, policy: RetentionPolicy, opts: { dryRun?: boolean; timeZone?: string; prune?: PruneOptions | boolean; log?: (m: string) => void } = {}): Promise<ForgetResult> {
  const lock = opts.dryRun ? undefined : await VaultLock.acquire(vault.storage, 'forget', opts.log);
  try {
    const { snapshots, damaged } = await vault.listSnapshots({ entries: false });
    const dated = snapshots.map((s: SnapshotListing) => ({ id: s.id, time: s.snapshot.time, tags: s.snapshot.tags }));
    const decisions = dated.length ? applyPolicy(dated, policy, opts.timeZone) : [];
    const forgotten: string[] = [];
    for (const d of decisions) {
      if (d.keep) continue;
      if (!opts.dryRun) await vault.storage.remove('snapshots', d.snapshot.id);
      forgotten.push(d.snapshot.id);
    }
    const result: ForgetResult = { decisions, forgotten, damaged: damaged.map((d) => d.id), dryRun: !!opts.dryRun };
    if (opts.prune) {
      // In a dry run the snapshots to forget still exist: the estimate counts them as gone.
      const pruneOpts = typeof opts.prune === 'object' ? opts.prune : {};
      result.prune = await prune(vault, { ...pruneOpts, dryRun: opts.dryRun, lock, log: opts.log, assumeForgotten: opts.dryRun ? new Set(forgotten) : undefined });
    }
    return result;
  } finally {
    await lock?.release().catch(() => undefined);
  }
}

// prune: forgotten data really leaves the drive, kept backups stay whole, and kill -9 at any step of a prune leaves
// a vault that verifies and restores every kept backup; the next prune finishes the job. A running backup is never
// pruned under: prune needs the writer lock, and recent packs no index lists are left alone.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { backup } from '../../src-main/engine/backup.js';
import { prune } from '../../src-main/engine/prune.js';
import { dataBlobAad } from '../../src-main/engine/vault/pack.js';
import { PackWriter } from '../../src-main/engine/pipeline/pack-writer.js';
import { hmac, seal } from '../../src-main/engine/vault/crypto.js';
import { Vault, formatFeatures } from '../../src-main/engine/vault/vault.js';
import { cli, cliAsync, cliEnv, PASS } from '../helpers/cli.js';
import { hashTree, tempDir, writeFile } from '../helpers/clinic.js';

const dataBytes = (vault: string): number => {
  let n = 0;
  for (const sub of fs.readdirSync(path.join(vault, 'data'))) {
    for (const f of fs.readdirSync(path.join(vault, 'data', sub))) n += fs.statSync(path.join(vault, 'data', sub, f)).size;
  }
  return n;
};

interface Prepared {
  work: string;
  /** A vault after six nightly backups and a forget that kept the last two. */
  vault: string;
  kept: Map<string, Record<string, string>>;
}

async function prepare(): Promise<Prepared> {
  const work = tempDir('cv-prune-');
  const media = path.join(work, 'media');
  const vaultDir = path.join(work, 'vault');
  const { vault } = await Vault.init(vaultDir, PASS);
  // Files kept all along, and each night one 1.5 MB scan that is gone the next night.
  for (let i = 0; i < 6; i++) writeFile(path.join(media, 'kept', `photo-${i}.jpg`), randomBytes(400_000));
  const trees: Array<[string, Record<string, string>]> = [];
  for (let day = 0; day < 6; day++) {
    if (day > 0) fs.rmSync(path.join(media, `scan-${day - 1}.pdf`));
    writeFile(path.join(media, `scan-${day}.pdf`), randomBytes(1_500_000));
    const r = await backup(vault, { folders: [media], appVersion: 'test', now: () => new Date(Date.UTC(2026, 5, 1 + day, 22)) });
    trees.push([r.snapshotId, hashTree(media)]);
  }
  const env = cliEnv(path.join(work, 'home'));
  const f = cli(['forget', '--vault', vaultDir, '--keep-last', '2'], env);
  expect(f.code, f.stderr).toBe(0);
  return { work, vault: vaultDir, kept: new Map(trees.slice(4)) };
}

function copyVault(p: Prepared, name: string): string {
  const dest = path.join(p.work, name);
  fs.cpSync(p.vault, dest, { recursive: true });
  return dest;
}

/** The vault verifies with every byte read, and each kept backup restores identical. */
function expectWhole(p: Prepared, vault: string, env: NodeJS.ProcessEnv, tag: string): void {
  const v = cli(['verify', '--vault', vault, '--read-data', '--json'], env);
  expect(v.code, `${tag}: ${v.stdout}${v.stderr}`).toBe(0);
  for (const [id, tree] of p.kept) {
    const target = path.join(p.work, 'restores', `${tag}-${id.slice(0, 8)}`);
    const r = cli(['restore', '--vault', vault, '--snapshot', id, '--target', target], env);
    expect(r.code, `${tag}: ${r.stderr}`).toBe(0);
    expect(hashTree(path.join(target, 'media')), tag).toEqual(tree);
  }
}

describe('prune', () => {
  let p: Prepared;
  let env: NodeJS.ProcessEnv;
  let cleanAfter = 0;
  beforeAll(async () => {
    p = await prepare();
    env = cliEnv(path.join(p.work, 'home'));
  });

  it('frees the space of forgotten backups and keeps the others whole', () => {
    const vault = copyVault(p, 'clean');
    const before = dataBytes(vault);
    const dry = cli(['prune', '--vault', vault, '--dry-run', '--json'], env);
    expect(dry.code, dry.stderr).toBe(0);
    const plan = JSON.parse(dry.stdout);
    expect(dataBytes(vault)).toBe(before);
    // Four forgotten 1.5 MB scans (sealed, incompressible) are what prune can free.
    expect(plan.bytesBefore - plan.bytesAfter).toBeGreaterThan(4 * 1_500_000);
    const r = cli(['prune', '--vault', vault, '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    const done = JSON.parse(r.stdout);
    expect(done.bytesBefore - done.bytesAfter).toBe(plan.bytesBefore - plan.bytesAfter);
    cleanAfter = dataBytes(vault);
    expect(before - cleanAfter).toBeGreaterThan(4 * 1_500_000);
    // Only the two kept nights' scans and the six photos remain, plus headers.
    expect(cleanAfter).toBeLessThan(2 * 1_500_000 + 6 * 400_000 + 200_000);
    expectWhole(p, vault, env, 'clean');
    // A second prune has nothing left to do.
    const again = JSON.parse(cli(['prune', '--vault', vault, '--json'], env).stdout);
    expect([again.packsDeleted, again.packsRepacked]).toEqual([0, 0]);
    expect(dataBytes(vault)).toBe(cleanAfter);
    const text = cli(['forget', '--vault', vault, '--keep-last', '1', '--prune'], env);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/Forgot 1 backup\(s\); 1 kept\.\nPruned: .* freed/);
  });

  const steps = ['prune:pack-written:1', 'prune:index-written:1', 'prune:index-removed:1', 'prune:pack-removed:1', 'prune:pack-removed:2'];
  it.each(steps)('kill -9 at %s leaves a vault that verifies and restores, and the next prune finishes', (step) => {
    const vault = copyVault(p, step.replace(/:/g, '-'));
    const r = cli(['prune', '--vault', vault], { ...env, CLINICVAULT_CRASH_AT: step });
    expect(r.code, `${step} should have killed the prune: ${r.stdout}${r.stderr}`).not.toBe(0);
    expect(r.stdout).not.toMatch(/Pruned/);
    expectWhole(p, vault, env, `${step}-crashed`);
    const again = cli(['prune', '--vault', vault, '--json'], env);
    expect(again.code, again.stderr).toBe(0);
    expectWhole(p, vault, env, `${step}-finished`);
    // Everything forgotten is gone, except new packs the killed run wrote and no index lists: left for an hour in
    // case a backup wrote them, then removed by a later prune.
    const left = JSON.parse(again.stdout);
    // Once the obsolete/ note is written, the packs it names go at once on the next prune.
    if (step !== 'prune:pack-written:1') expect(left.recentOrphansKept).toBe(0);
    const leftover = left.recentOrphansKept > 0 ? 2 * 1_500_000 + 6 * 400_000 + 200_000 : 0;
    expect(dataBytes(vault), `${again.stdout} ${r.stderr}`).toBeLessThanOrEqual(cleanAfter + leftover + 100_000);
  });

  it('refuses to touch a damaged vault: a needed pack missing, a pack that fails authentication', () => {
    const vault = copyVault(p, 'damaged');
    const packs = fs.readdirSync(path.join(vault, 'data')).flatMap((sub) => fs.readdirSync(path.join(vault, 'data', sub)).map((f) => path.join(vault, 'data', sub, f)));
    const listing = (): string[] => ['index', 'snapshots'].flatMap((d) => fs.readdirSync(path.join(vault, d))).sort();
    const before = listing();
    // The largest pack holds kept data; move it away.
    const biggest = packs.sort((a, b) => fs.statSync(b).size - fs.statSync(a).size)[0]!;
    fs.renameSync(biggest, `${biggest}.away`);
    const r = cli(['prune', '--vault', vault], env);
    expect(r.code).toBe(9);
    expect(r.stderr).toMatch(/Prune changes nothing: pack [0-9a-f]{12}, which backups need, is missing from the drive/);
    expect(listing()).toEqual(before);
    fs.renameSync(`${biggest}.away`, biggest);
    // A pack whose header cannot be read (found when the index has to be rebuilt from the packs).
    for (const f of fs.readdirSync(path.join(vault, 'index'))) fs.rmSync(path.join(vault, 'index', f));
    const buf = fs.readFileSync(biggest);
    buf[buf.length - 10]! ^= 0xff;
    fs.writeFileSync(biggest, buf);
    const d = cli(['prune', '--vault', vault], env);
    expect(d.code).toBe(9);
    expect(d.stderr).toMatch(/Prune changes nothing while the vault is damaged/);
    expect(fs.existsSync(biggest)).toBe(true);
  });

  it('survives kill -9 at random moments', async () => {
    const vault = copyVault(p, 'random');
    for (let i = 0; i < 6; i++) {
      const { child, done } = cliAsync(['prune', '--vault', vault], env);
      const timer = setTimeout(() => child.kill('SIGKILL'), 60 + Math.floor(Math.random() * 400));
      await done;
      clearTimeout(timer);
      const v = cli(['verify', '--vault', vault, '--json'], env);
      expect(v.code, v.stdout).toBe(0);
    }
    expectWhole(p, vault, env, 'random');
  });

  it('never runs beside a backup, and leaves recent unlisted packs alone', async () => {
    const vaultDir = copyVault(p, 'locked');
    const vault = await Vault.open(vaultDir, { passphrase: PASS });
    // A backup that holds the lock: prune is refused. (A backup can finish before the prune process has even
    // started; then the attempt proves nothing and is repeated with new data.)
    const big = path.join(p.work, 'big');
    let refused: { code: number; stderr: string } | undefined;
    for (let attempt = 0; attempt < 5 && !refused; attempt++) {
      writeFile(path.join(big, `scan-${attempt}.pdf`), randomBytes(120_000_000));
      const before = dataBytes(vaultDir);
      const run = cliAsync(['backup', '--vault', vaultDir, '--folder', big], env);
      const deadline = Date.now() + 20_000;
      while (fs.readdirSync(path.join(vaultDir, 'locks')).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      const r = cli(['prune', '--vault', vaultDir, '--json'], env);
      expect((await run.done).code).toBe(0);
      expect(dataBytes(vaultDir)).toBeGreaterThan(before);
      if (r.code === 8) refused = r;
      else expect(r.code, r.stderr).toBe(0); // ran after the backup had finished
    }
    expect(refused?.stderr).toMatch(/Another ClinicVault process is writing to this vault \(backup/);

    // A pack no index lists, just written (what a backup writes before its index): kept for an hour.
    const chunk = randomBytes(5000);
    let orphan = { id: '' };
    const writer = new PackWriter(vault.storage, vault.keys, vault.config.packSize, (pack) => (orphan = pack));
    const chunkId = hmac(vault.keys.id, chunk);
    await writer.add({ id: chunkId, type: 0, compression: 0, rawLength: chunk.length, sealed: seal(vault.keys.encryption, chunk, dataBlobAad(chunkId, formatFeatures(vault.config).boundIds)) });
    await writer.finish();
    expect(orphan.id).toMatch(/^[0-9a-f]{64}$/);
    const kept = await prune(vault);
    expect(kept.recentOrphansKept).toBe(1);
    expect(await vault.storage.exists('data', orphan.id)).toBe(true);
    const later = await prune(vault, { orphanGraceMs: 0 });
    expect(later.packsDeleted).toBe(1);
    expect(await vault.storage.exists('data', orphan.id)).toBe(false);
  });
});

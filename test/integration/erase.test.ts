// erase: one patient's folder leaves every backup and the drive. The proof is a marker that was in the erased
// files: it is searched for in every decrypted, decompressed chunk of every pack (and in the raw files), found
// before and not after. Everything else still restores; kill -9 during an erase is finished by the next one.
import Database from 'better-sqlite3';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { backup } from '../../src-main/engine/backup.js';
import { openBlob, parsePack } from '../../src-main/engine/vault/pack.js';
import { readSnapshot } from '../../src-main/engine/vault/snapshot.js';
import { LocalStorage } from '../../src-main/engine/vault/storage.js';
import { Vault, formatFeatures } from '../../src-main/engine/vault/vault.js';
import { cli, cliEnv, PASS } from '../helpers/cli.js';
import { hashTree, makeClinicDb, tempDir, writeFile } from '../helpers/clinic.js';

const MARKER = `ERASE-ME-P0042-${randomBytes(8).toString('hex')}`;

/** Where the marker (or the patient's id) can still be read with the key: chunks, snapshots; and without it. */
async function traces(vaultDir: string): Promise<string[]> {
  const vault = await Vault.open(vaultDir, { passphrase: PASS });
  const storage = new LocalStorage(vaultDir);
  const found: string[] = [];
  for (const packId of await storage.list('data')) {
    const bytes = await storage.read('data', packId);
    if (bytes.includes(MARKER)) found.push(`raw pack ${packId}`);
    for (const b of parsePack(vault.keys, bytes, packId)) {
      if (openBlob(vault.keys, bytes.subarray(b.offset, b.offset + b.length), b, packId, formatFeatures(vault.config).boundIds).includes(MARKER)) found.push(`chunk in pack ${packId}`);
    }
  }
  for (const id of await storage.list('snapshots')) {
    if (JSON.stringify(await readSnapshot(storage, vault.keys, id)).includes('P0042')) found.push(`snapshot ${id}`);
  }
  return found;
}

interface Prepared {
  work: string;
  vault: string;
  media: string;
  db: string;
  /** The latest backup's media tree without the erased patient. */
  expected: Record<string, string>;
}

async function prepare(): Promise<Prepared> {
  const work = tempDir('cv-erase-');
  const media = path.join(work, 'media');
  const db = path.join(work, 'clinic.sqlite');
  const vaultDir = path.join(work, 'vault');
  makeClinicDb(db, 200);
  const { vault } = await Vault.init(vaultDir, PASS);
  writeFile(path.join(media, 'patients', 'P0041', 'photo.jpg'), randomBytes(300_000));
  writeFile(path.join(media, 'patients', 'P0042', 'photo.jpg'), randomBytes(500_000));
  writeFile(path.join(media, 'letters', 'referral.txt'), 'Dear colleague, '.repeat(5000));
  // A link the backups skip, and name in their list of skipped files.
  fs.symlinkSync('photo.jpg', path.join(media, 'patients', 'P0042', 'photo-link.jpg'));
  for (let day = 0; day < 3; day++) {
    // The patient's notes change every day: three versions, each holding the marker (among compressible text).
    writeFile(path.join(media, 'patients', 'P0042', 'notes.txt'), `Day ${day}. ${MARKER}\n` + 'Follow-up in two weeks. '.repeat(3000) + randomBytes(2000).toString('hex'));
    writeFile(path.join(media, 'patients', 'P0041', `scan-${day}.pdf`), randomBytes(200_000));
    await backup(vault, { folders: [media], sqlite: [db], appVersion: 'test', now: () => new Date(Date.UTC(2026, 6, 1 + day, 22)) });
  }
  const expected = hashTree(media);
  for (const k of Object.keys(expected)) if (k.startsWith('patients/P0042/')) delete expected[k];
  return { work, vault: vaultDir, media, db, expected };
}

function copyVault(p: Prepared, name: string): string {
  const dest = path.join(p.work, name);
  fs.cpSync(p.vault, dest, { recursive: true });
  return dest;
}

describe('erase', () => {
  let p: Prepared;
  let env: NodeJS.ProcessEnv;
  beforeAll(async () => {
    p = await prepare();
    env = cliEnv(path.join(p.work, 'home'));
  });

  it('removes a patient folder from every backup and every byte of it from the drive', async () => {
    const vault = copyVault(p, 'clean');
    expect((await traces(vault)).length).toBeGreaterThanOrEqual(3); // the search finds what is there
    const snapsBefore = fs.readdirSync(path.join(vault, 'snapshots')).sort();

    const dry = cli(['erase', '--vault', vault, '--path', 'media/patients/P0042', '--dry-run'], env);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/Dry run: 2 file\(s\) in 3 backup\(s\) would be erased/);
    expect(dry.stdout).toContain('media/patients/P0042/notes.txt');
    expect(fs.readdirSync(path.join(vault, 'snapshots')).sort()).toEqual(snapsBefore);

    // This computer's caches of the vault, as a backup or restore leaves them.
    const cacheDir = path.join(p.work, 'home', 'cache');
    await (await Vault.open(vault, { passphrase: PASS }, { cacheDir })).listSnapshots({ entries: false, cached: true });

    const r = cli(['erase', '--vault', vault, '--path', 'media/patients/P0042', '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout);
    expect(Object.keys(res.rewritten).sort()).toEqual(snapsBefore);
    expect(await traces(vault)).toEqual([]);
    // The caches were made again: they list the rewritten backups only, and the index as it is now.
    const cached = await Vault.open(vault, { passphrase: PASS }, { cacheDir });
    const listed = [...(await cached.snapshotCache!.read(cached.keys)).keys()].sort();
    expect(listed).toEqual(Object.values(res.rewritten).sort());
    expect((await cached.loadIndex()).fromCache).toBe(true);
    for (const f of fs.readdirSync(path.join(vault, 'index'))) expect(fs.readFileSync(path.join(vault, 'index', f)).includes(MARKER)).toBe(false);

    const v = cli(['verify', '--vault', vault, '--read-data'], env);
    expect(v.code, v.stdout).toBe(0);
    expect(JSON.parse(cli(['snapshots', '--vault', vault, '--json'], env).stdout)).toHaveLength(3);
    const target = path.join(p.work, 'restore-clean');
    const rs = cli(['restore', '--vault', vault, '--snapshot', 'latest', '--target', target], env);
    expect(rs.code, rs.stderr).toBe(0);
    expect(hashTree(path.join(target, 'media'))).toEqual(p.expected);
    const rows = new Database(path.join(target, 'clinic.sqlite'), { readonly: true });
    expect(rows.prepare('SELECT count(*) FROM patients').pluck().get()).toBe(200);
    rows.close();

    // The audit log says who erased which pattern and how much, and holds none of the content or file names.
    const inv = new Database(path.join(p.work, 'home', 'inventory.sqlite'), { readonly: true });
    const entry = inv.prepare("SELECT actor, details FROM audit WHERE action = 'erase'").get() as { actor: string; details: string };
    inv.close();
    const details = JSON.parse(entry.details);
    expect(details).toMatchObject({ patterns: ['media/patients/P0042'], files: 2, snapshotsRewritten: 3 });
    expect(entry.actor).toBeTruthy();
    expect(entry.details).not.toContain('notes.txt');
    expect(entry.details).not.toContain(MARKER);
  });

  it('refuses patterns that are not files, and database sources', () => {
    const vault = copyVault(p, 'refuse');
    expect(cli(['erase', '--vault', vault, '--path', '**'], env).code).toBe(2);
    const whole = cli(['erase', '--vault', vault, '--path', 'media/'], env);
    expect(whole.code).toBe(2);
    expect(whole.stderr).toMatch(/matches the whole folder "media"/);
    const db = cli(['erase', '--vault', vault, '--path', 'clinic.sqlite'], env);
    expect(db.code).toBe(2);
    expect(db.stderr).toMatch(/is a database .* erase removes files, not database rows/);
  });

  const steps = ['erase:snapshot-written:1', 'erase:snapshot-removed:2', 'prune:index-written:1', 'prune:pack-removed:1'];
  it.each(steps)('kill -9 at %s: the vault stays whole and the next erase finishes the job', async (step) => {
    const vault = copyVault(p, step.replace(/:/g, '-'));
    const r = cli(['erase', '--vault', vault, '--path', 'media/patients/P0042'], { ...env, CLINICVAULT_CRASH_AT: step });
    expect(r.code, `${step}: ${r.stdout}`).not.toBe(0);
    expect(cli(['verify', '--vault', vault, '--read-data'], env).code).toBe(0);
    const again = cli(['erase', '--vault', vault, '--path', 'media/patients/P0042'], env);
    expect(again.code, again.stderr).toBe(0);
    expect(await traces(vault)).toEqual([]);
    expect(JSON.parse(cli(['snapshots', '--vault', vault, '--json'], env).stdout)).toHaveLength(3);
    const target = path.join(p.work, `restore-${step.replace(/:/g, '-')}`);
    expect(cli(['restore', '--vault', vault, '--snapshot', 'latest', '--target', target], env).code).toBe(0);
    expect(hashTree(path.join(target, 'media'))).toEqual(p.expected);
  });
});

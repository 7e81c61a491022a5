// Format 2: a database's new pages are stored in groups (one compressed, sealed blob per ~64 pages, each page still
// named and deduplicated on its own), and packs are named by the hash of their tail. Every generation of a changing
// database restores exactly; prune remakes a group whose members are partly forgotten, so no byte of a forgotten
// page stays; format 1, 2 and 3 vaults are still written in their own formats. Format 4 writes each member's id
// before its bytes in the group (an IdGroup), format 3 and 2 plain Groups.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { backup } from '../../src-main/engine/backup.js';
import { prune } from '../../src-main/engine/prune.js';
import { analyzeUsage } from '../../src-main/engine/usage.js';
import { BLOB_AAD, BlobType, GROUP_AAD, ID_GROUP_AAD, openBlob, packNameMatches, parsePack } from '../../src-main/engine/vault/pack.js';
import { open, sha256 } from '../../src-main/engine/vault/crypto.js';
import { Vault, formatFeatures } from '../../src-main/engine/vault/vault.js';
import { cli, cliEnv, PASS } from '../helpers/cli.js';
import { dbContent, makeClinicDb, tempDir } from '../helpers/clinic.js';

const MARKER = 'FORGOTTEN-NOTE-7f3a';

/** Every chunk of every pack, decrypted (a group member: its slice of the group). */
function allChunks(vault: Vault): Buffer[] {
  const out: Buffer[] = [];
  for (const id of fs.readdirSync(path.join(vault.location, 'data')).flatMap((d) => fs.readdirSync(path.join(vault.location, 'data', d)))) {
    const bytes = fs.readFileSync(vault.storage.filePath('data', id));
    for (const b of parsePack(vault.keys, bytes, id)) out.push(openBlob(vault.keys, bytes.subarray(b.offset, b.offset + b.length), b, id, formatFeatures(vault.config).boundIds));
  }
  return out;
}

/** A new vault set back to an older format `version` (as ClinicVault of that version made it), and the CLI's env. */
async function vaultOfFormat(work: string, version: number): Promise<{ vaultDir: string; env: NodeJS.ProcessEnv }> {
  const vaultDir = path.join(work, 'vault');
  await Vault.init(vaultDir, PASS);
  const configFile = path.join(vaultDir, 'config.json');
  fs.writeFileSync(configFile, JSON.stringify({ ...JSON.parse(fs.readFileSync(configFile, 'utf8')), version }, null, 2));
  return { vaultDir, env: cliEnv(path.join(work, 'home')) };
}

/** A clinic database of `rows` rows backed up by the CLI into a new vault of format `version`, opened. */
async function databaseInFormat(version: number, rows: number): Promise<{ work: string; db: string; vaultDir: string; env: NodeJS.ProcessEnv; vault: Vault }> {
  const work = tempDir(`cv-groups-v${version}-`);
  const db = path.join(work, 'clinic.sqlite');
  makeClinicDb(db, rows);
  const { vaultDir, env } = await vaultOfFormat(work, version);
  const b = cli(['backup', '--vault', vaultDir, '--sqlite', db], env);
  expect(b.code, b.stderr).toBe(0);
  return { work, db, vaultDir, env, vault: await Vault.open(vaultDir, { passphrase: PASS }) };
}

function change(db: string, day: number, note: string): void {
  const d = new Database(db);
  d.pragma('secure_delete = ON');
  d.prepare('UPDATE encounters SET note = ? WHERE id % 9 = ?').run(`${note} day ${day}. `.repeat(4), day % 9);
  d.close();
}

describe('format 2: database pages in groups', () => {
  it('stores new pages in groups, restores every generation exactly, and prune leaves nothing of forgotten pages', async () => {
    const work = tempDir('cv-groups-');
    const db = path.join(work, 'clinic.sqlite');
    makeClinicDb(db, 600);
    const vaultDir = path.join(work, 'vault');
    const { vault } = await Vault.init(vaultDir, PASS);
    const generations: Array<{ id: string; content: Record<string, unknown[]> }> = [];
    for (let day = 0; day < 3; day++) {
      // Day 0 writes the marker into some notes; day 1 overwrites exactly those notes.
      if (day === 0) change(db, 1, MARKER);
      else change(db, day, 'Reviewed, no change');
      const r = await backup(vault, { sqlite: [db], appVersion: 'test', now: () => new Date(Date.UTC(2026, 5, 1 + day, 22)) });
      generations.push({ id: r.snapshotId, content: dbContent(db) });
    }

    // Every page of the database is a member of an IdGroup (format 4), groups hold many pages, and packs are named by
    // their tail.
    const index = await vault.loadIndex();
    const blobs = [...index.packs.values()].flatMap((p) => p.blobs);
    expect(blobs.length).toBeGreaterThan(200);
    expect(blobs.every((b) => b.type === BlobType.IdMember)).toBe(true);
    const groups = new Set(blobs.map((b) => `${b.offset}:${b.length}:${b.groupRaw}`));
    expect(blobs.length / groups.size).toBeGreaterThan(8);
    for (const [id, rec] of index.packs) {
      const bytes = fs.readFileSync(vault.storage.filePath('data', id));
      expect(packNameMatches(bytes, id, rec.blobs)).toBe(true);
      expect(sha256(bytes).toString('hex')).not.toBe(id);
    }

    const env = cliEnv(path.join(work, 'home'));
    const restoreEach = (ids: string[], tag: string): void => {
      for (const g of generations.filter((x) => ids.includes(x.id))) {
        const target = path.join(work, `restore-${tag}-${g.id.slice(0, 8)}`);
        const r = cli(['restore', '--vault', vaultDir, '--snapshot', g.id, '--target', target, '--json'], env);
        expect(r.code, r.stderr).toBe(0);
        expect((JSON.parse(r.stdout) as { databases: Array<{ ok: boolean }> }).databases[0]!.ok).toBe(true);
        expect(dbContent(path.join(target, 'clinic.sqlite'))).toEqual(g.content);
        expect(fs.readFileSync(path.join(target, 'clinic.sqlite')).includes(MARKER)).toBe(g === generations[0]);
      }
    };
    restoreEach(generations.map((g) => g.id), 'before');
    expect(allChunks(vault).some((c) => c.includes(MARKER))).toBe(true);

    // Forget day 0: its marker pages are no longer needed, but share groups with pages days 1 and 2 still use.
    const f = cli(['forget', '--vault', vaultDir, '--keep-last', '2'], env);
    expect(f.code, f.stderr).toBe(0);
    const before = await analyzeUsage(await vault.loadIndex(), (await vault.listSnapshots({ entries: false })).snapshots, (id) => vault.readSnapshot(id));
    const partial = [...before.packs.values()].filter((p) => p.used.length > 0 && p.unusedBytes > 0);
    expect(partial.length).toBeGreaterThan(0);
    const pr = await prune(vault, { repackAll: true });
    expect(pr.packsRepacked).toBeGreaterThan(0);

    const after = await analyzeUsage(await vault.loadIndex(), (await vault.listSnapshots({ entries: false })).snapshots, (id) => vault.readSnapshot(id));
    expect([...after.packs.values()].reduce((a, p) => a + p.unusedBytes, 0)).toBe(0);
    expect(allChunks(vault).some((c) => c.includes(MARKER))).toBe(false);
    const v = cli(['verify', '--vault', vaultDir, '--read-data', '--json'], env);
    expect(v.code, v.stdout + v.stderr).toBe(0);
    restoreEach(generations.slice(1).map((g) => g.id), 'after');
  });

  it('a format 2 vault is still written as format 2: data blobs sealed without their ids, so ClinicVault 0.2 reads it', async () => {
    const work = tempDir('cv-groups-v2-');
    const db = path.join(work, 'clinic.sqlite');
    makeClinicDb(db, 100);
    const media = path.join(work, 'media');
    fs.mkdirSync(media);
    fs.writeFileSync(path.join(media, 'scan.pdf'), randomBytes(200_000));
    const { vaultDir, env } = await vaultOfFormat(work, 2);
    const b = cli(['backup', '--vault', vaultDir, '--sqlite', db, '--folder', media], env);
    expect(b.code, b.stderr).toBe(0);
    const vault = await Vault.open(vaultDir, { passphrase: PASS });
    let data = 0;
    for (const id of (await vault.loadIndex()).packs.keys()) {
      const bytes = fs.readFileSync(vault.storage.filePath('data', id));
      for (const blob of parsePack(vault.keys, bytes, id).filter((x) => x.type === BlobType.Data)) {
        const sealed = bytes.subarray(blob.offset, blob.offset + blob.length);
        expect(open(vault.keys.encryption, sealed, BLOB_AAD).length).toBeGreaterThan(0);
        expect(() => openBlob(vault.keys, sealed, blob, id, true)).toThrow(/authentication failed/);
        data++;
      }
    }
    expect(data).toBeGreaterThan(0);
    expect(cli(['verify', '--vault', vaultDir, '--read-data'], env).code).toBe(0);
    const target = path.join(work, 'restore');
    const r = cli(['restore', '--vault', vaultDir, '--target', target], env);
    expect(r.code, r.stderr).toBe(0);
    expect(dbContent(path.join(target, 'clinic.sqlite'))).toEqual(dbContent(db));
    expect(fs.readFileSync(path.join(target, 'media', 'scan.pdf')).equals(fs.readFileSync(path.join(media, 'scan.pdf')))).toBe(true);
  });

  it('a format 3 vault is still written as format 3: groups without their members\' ids, so ClinicVault 0.3 reads it', async () => {
    const { work, db, vaultDir, env, vault } = await databaseInFormat(3, 300);
    const blobs = [...(await vault.loadIndex()).packs.values()].flatMap((p) => p.blobs);
    expect(blobs.length).toBeGreaterThan(30);
    expect(blobs.every((x) => x.type === BlobType.Member)).toBe(true);
    // The group's plaintext is the pages one after the other, sealed under the format 2 and 3 group aad.
    const first = blobs[0]!;
    const pack = [...(await vault.loadIndex()).packs.keys()][0]!;
    const bytes = fs.readFileSync(vault.storage.filePath('data', pack));
    const sealed = bytes.subarray(first.offset, first.offset + first.length);
    expect(() => open(vault.keys.encryption, sealed, ID_GROUP_AAD)).toThrow();
    expect(open(vault.keys.encryption, sealed, GROUP_AAD).length).toBe(first.length - 28);
    expect(cli(['verify', '--vault', vaultDir, '--read-data'], env).code).toBe(0);
    const target = path.join(work, 'restore');
    const r = cli(['restore', '--vault', vaultDir, '--target', target], env);
    expect(r.code, r.stderr).toBe(0);
    expect(dbContent(path.join(target, 'clinic.sqlite'))).toEqual(dbContent(db));
  });

  it('a format 1 vault is still written as format 1: one blob per page, packs named by their whole content', async () => {
    const { work, db, vaultDir, env, vault } = await databaseInFormat(1, 100);
    const index = await vault.loadIndex();
    expect(index.packs.size).toBeGreaterThan(0);
    for (const [id, rec] of index.packs) {
      expect(rec.blobs.every((x) => x.type === BlobType.Data)).toBe(true);
      expect(sha256(fs.readFileSync(vault.storage.filePath('data', id))).toString('hex')).toBe(id);
    }
    const target = path.join(work, 'restore');
    const r = cli(['restore', '--vault', vaultDir, '--target', target], env);
    expect(r.code, r.stderr).toBe(0);
    expect(dbContent(path.join(target, 'clinic.sqlite'))).toEqual(dbContent(db));
  });
});

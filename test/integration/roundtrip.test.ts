// Restore equals the source across several snapshots with files added, changed, deleted and renamed.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import { Vault } from '../../src-main/engine/vault/vault.js';
import { backup } from '../../src-main/engine/backup.js';
import { restore } from '../../src-main/engine/restore.js';
import { verify } from '../../src-main/engine/verify.js';
import { dbContent, hashTree, makeClinicDb, makeMedia, tempDir, writeFile } from '../helpers/clinic.js';
import { PASS } from '../helpers/cli.js';

describe('backup and restore round trip', () => {
  it('restores every snapshot exactly as it was, across adds, edits, deletes and renames', async () => {
    const work = tempDir();
    const media = path.join(work, 'media');
    const dbFile = path.join(work, 'clinic.sqlite');
    makeClinicDb(dbFile);
    makeMedia(media);
    const { vault } = await Vault.init(path.join(work, 'vault'), PASS);
    const expected: Array<{ id: string; media: Record<string, string>; db: Record<string, unknown[]> }> = [];
    const take = async (): Promise<void> => {
      const r = await backup(vault, { sqlite: [dbFile], folders: [media], appVersion: 'test', tmpDir: path.join(work, 'tmp') });
      expect(r.partial).toBe(false);
      expected.push({ id: r.snapshotId, media: hashTree(media), db: dbContent(dbFile) });
      return undefined;
    };
    await take();
    // Day 2: new photo, edited letter, a deleted file, a renamed folder, database edits.
    writeFile(path.join(media, 'clinical_media', 'encounter_new', 'photo_new.jpg'), fs.readFileSync(path.join(media, 'clinical_media', 'encounter_0', 'photo_0.jpg')).subarray(0, 1000));
    fs.appendFileSync(path.join(media, 'documents', 'patient_1', 'letter_1.pdf'), '\nAddendum: lab results normal.\n');
    fs.rmSync(path.join(media, 'documents', 'patient_2', 'letter_2.pdf'));
    fs.renameSync(path.join(media, 'clinical_media', 'encounter_3'), path.join(media, 'clinical_media', 'encounter_3_renamed'));
    const db = new Database(dbFile);
    db.exec("UPDATE patients SET allergies = 'latex' WHERE id % 10 = 0; DELETE FROM invoices WHERE id % 17 = 0; INSERT INTO patients(name) VALUES ('Zoë Ångström')");
    db.close();
    await take();
    // Day 3: empty file, unicode names, deep folder.
    writeFile(path.join(media, 'documents', 'empty.pdf'), '');
    writeFile(path.join(media, 'documents', 'Überweisung für Frau Çelik.pdf'), 'letter text '.repeat(100));
    writeFile(path.join(media, 'a', 'b', 'c', 'd', 'deep.txt'), 'deep');
    writeFile(path.join(media, 'documents', 'private-scan.pdf'), 'private '.repeat(50));
    fs.chmodSync(path.join(media, 'documents', 'private-scan.pdf'), 0o600);
    writeFile(path.join(media, 'documents', 'shared-scan.pdf'), 'shared '.repeat(50));
    fs.chmodSync(path.join(media, 'documents', 'shared-scan.pdf'), 0o644);
    await take();

    const second = await backup(vault, { sqlite: [dbFile], folders: [media], appVersion: 'test', tmpDir: path.join(work, 'tmp') });
    expect(second.snapshot.totals.filesChanged + second.snapshot.totals.filesNew).toBe(0);

    for (const [i, exp] of expected.entries()) {
      const target = path.join(work, `restore-${i}`);
      const snap = await vault.readSnapshot(exp.id);
      const res = await restore(vault, snap, { target });
      expect(res.failed).toEqual([]);
      expect(res.databases).toHaveLength(1);
      expect(res.databases[0]!.ok).toBe(true);
      expect(hashTree(path.join(target, 'media'))).toEqual(exp.media);
      expect(dbContent(path.join(target, 'clinic.sqlite'))).toEqual(exp.db);
    }
    // mtimes come back
    const srcStat = fs.statSync(path.join(media, 'documents', 'patient_0', 'letter_0.pdf'));
    const outStat = fs.statSync(path.join(work, 'restore-2', 'media', 'documents', 'patient_0', 'letter_0.pdf'));
    expect(Math.abs(outStat.mtimeMs - srcStat.mtimeMs)).toBeLessThan(2);
    // and so do permissions: the clinic's private scan stays private, a shared one stays readable
    const restoredMode = (rel: string): number => fs.statSync(path.join(work, 'restore-2', 'media', rel)).mode & 0o777;
    expect(restoredMode('documents/private-scan.pdf')).toBe(0o600);
    expect(restoredMode('documents/shared-scan.pdf')).toBe(0o644);
    expect(restoredMode('a/b/c/d/deep.txt')).toBe(fs.statSync(path.join(media, 'a', 'b', 'c', 'd', 'deep.txt')).mode & 0o777);
    // and no partial file is left anywhere
    const left = fs.readdirSync(path.join(work, 'restore-2'), { recursive: true }).map(String).filter((f) => f.includes('.clinicvault-partial'));
    expect(left).toEqual([]);
    const report = await verify(vault, { readData: true });
    expect(report.problems).toEqual([]);
  });

  it('restores only the included paths and refuses to overwrite without being asked', async () => {
    const work = tempDir();
    const media = path.join(work, 'media');
    makeMedia(media, 2, 3);
    const { vault } = await Vault.init(path.join(work, 'vault'), PASS);
    const r = await backup(vault, { folders: [media], appVersion: 'test' });
    const target = path.join(work, 'one');
    const res = await restore(vault, r.snapshot, { target, include: ['media/documents/patient_1'] });
    expect(Object.keys(hashTree(target))).toEqual(['media/documents/patient_1/letter_1.pdf']);
    expect(res.files).toBe(1);
    await expect(restore(vault, r.snapshot, { target, include: ['media/documents/patient_1'] })).rejects.toThrow(/overwrite 1 existing file/);
    fs.writeFileSync(path.join(target, 'media/documents/patient_1/letter_1.pdf'), 'changed');
    await restore(vault, r.snapshot, { target, include: ['media/documents/patient_1'], overwrite: true });
    expect(hashTree(target)['media/documents/patient_1/letter_1.pdf']).toEqual(hashTree(media)['documents/patient_1/letter_1.pdf']);
    await expect(restore(vault, r.snapshot, { target, include: ['media/nope'] })).rejects.toThrow(/Nothing in this snapshot matches/);
  });

  it('reports files it cannot back up by name and still finishes the backup', async () => {
    const work = tempDir();
    const media = path.join(work, 'media');
    makeMedia(media, 1, 2);
    // A named pipe is not a file that can be backed up, whoever runs the test.
    expect(spawnSync('mkfifo', [path.join(media, 'documents', 'scanner.pipe')]).status).toBe(0);
    const expectedSkips = ['documents/scanner.pipe'];
    // Permissions stop every user but root; root reads a mode-000 file, so only check it where it applies.
    const locked = path.join(media, 'documents', 'locked.pdf');
    writeFile(locked, 'secret');
    fs.chmodSync(locked, 0o000);
    if (process.getuid?.() !== 0) expectedSkips.push('documents/locked.pdf');
    const { vault } = await Vault.init(path.join(work, 'vault'), PASS);
    const r = await backup(vault, { folders: [media], appVersion: 'test' });
    expect(r.skipped.map((s) => s.path).sort()).toEqual(expectedSkips.sort());
    expect(r.skipped.every((s) => s.source === 'media' && s.reason.length > 0)).toBe(true);
    expect(r.partial).toBe(true);
    const stored = r.snapshot.sources[0]!.entries.map((e) => e.path);
    expect(stored).toContain('documents/patient_0/letter_0.pdf');
    expect(stored).not.toContain('documents/scanner.pipe');
  });
});

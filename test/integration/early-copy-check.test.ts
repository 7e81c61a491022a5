// The CLI makes a database's consistent copy, and runs its quick check, while scrypt unlocks the vault
// (EarlySqliteCopy.checkWhile). The backup then records what that check found, exactly as when a worker runs it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { backup } from '../../src-main/engine/backup.js';
import { startSqliteCopy } from '../../src-main/engine/sources/sqlite.js';
import { Vault } from '../../src-main/engine/vault/vault.js';
import { PASS } from '../helpers/cli.js';
import { makeClinicDb, tempDir } from '../helpers/clinic.js';

const never = new Promise<void>(() => undefined);

describe('the quick check of an early database copy', () => {
  it('runs while the unlock is still going, and the backup records its counts', async () => {
    const work = tempDir('cv-early-');
    const db = path.join(work, 'clinic.sqlite');
    makeClinicDb(db, 120);
    const { vault } = await Vault.init(path.join(work, 'vault'), PASS);
    const early = await startSqliteCopy(db, path.join(work, 'tmp'));
    await early.checkWhile(never);
    expect(early.checked).toBeDefined();
    await expect(early.checked).resolves.toEqual({ integrityCheck: 'ok', tables: { encounters: 360, invoices: 360, patients: 120 } });

    const r = await backup(vault, { sqlite: [db], sqliteCopies: [early], appVersion: 'test', tmpDir: path.join(work, 'tmp') });
    expect(r.warnings).toEqual([]);
    const snap = await vault.readSnapshot(r.snapshotId);
    expect(snap.sources[0]).toMatchObject({ kind: 'sqlite', tables: { encounters: 360, invoices: 360, patients: 120 } });
    // The copy is removed when the backup ends.
    expect(fs.existsSync(early.copyPath)).toBe(false);
  });

  it('leaves no copy behind when the unlock fails while the check runs', async () => {
    const work = tempDir('cv-early-');
    const db = path.join(work, 'clinic.sqlite');
    makeClinicDb(db, 300);
    const early = await startSqliteCopy(db, path.join(work, 'tmp'));
    await early.checkWhile(never);
    // A wrong passphrase: the CLI cleans up at once, while the check's thread may still read the copy.
    await early.cleanup();
    expect(fs.existsSync(early.copyPath)).toBe(false);
    expect(fs.readdirSync(path.join(work, 'tmp'))).toEqual([]);
  });

  it('is left to the backup when the unlock ends first', async () => {
    const work = tempDir('cv-early-');
    const db = path.join(work, 'clinic.sqlite');
    makeClinicDb(db, 20);
    const early = await startSqliteCopy(db, path.join(work, 'tmp'));
    await early.checkWhile(Promise.resolve());
    expect(early.checked).toBeUndefined();
    await early.cleanup();
  });

  it('reports a damaged copy as a warning of the backup, which still stores it', async () => {
    const work = tempDir('cv-early-');
    const db = path.join(work, 'clinic.sqlite');
    makeClinicDb(db, 300);
    // Damage one table's b-tree page in place (the header and schema stay readable).
    const d = new Database(db, { readonly: true });
    const root = d.prepare("SELECT rootpage FROM sqlite_master WHERE name = 'encounters'").pluck().get() as number;
    const pageSize = d.pragma('page_size', { simple: true }) as number;
    d.close();
    const fd = fs.openSync(db, 'r+');
    fs.writeSync(fd, Buffer.alloc(64, 0xee), 0, 64, (root - 1) * pageSize + 8);
    fs.closeSync(fd);

    const { vault } = await Vault.init(path.join(work, 'vault'), PASS);
    // Checked during the unlock, and by a worker (the unlock ended first): the same outcome.
    for (const busy of [never, Promise.resolve()]) {
      const early = await startSqliteCopy(db, path.join(work, 'tmp'));
      await early.checkWhile(busy);
      const r = await backup(vault, { sqlite: [db], sqliteCopies: [early], appVersion: 'test', tmpDir: path.join(work, 'tmp') });
      expect(r.partial).toBe(true);
      expect(r.warnings.join(' ')).toMatch(/failed SQLite's quick integrity check \(SQLite could not check it: database disk image is malformed\)/);
      const snap = await vault.readSnapshot(r.snapshotId);
      expect(snap.sources.map((src) => src.kind)).toEqual(['sqlite']);
    }
  });
});

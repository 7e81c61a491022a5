// A database in rollback-journal mode is read in place under SQLite's read lock, with no copy written (decision
// 0034): its writers wait until the backup has read it, and are let go when it has. WAL databases, and databases
// above the size limit, are copied as before.
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { backup } from '../../src-main/engine/backup.js';
import { EnginePool } from '../../src-main/engine/pipeline/pool.js';
import type { ChunkResult } from '../../src-main/engine/pipeline/protocol.js';
import { restore } from '../../src-main/engine/restore.js';
import { startSqliteCopy } from '../../src-main/engine/sources/sqlite.js';
import { Vault } from '../../src-main/engine/vault/vault.js';
import { PASS } from '../helpers/cli.js';
import { makeClinicDb, tempDir } from '../helpers/clinic.js';

function rollbackDb(file: string, patients: number): void {
  makeClinicDb(file, patients);
  const db = new Database(file);
  db.pragma('journal_mode = DELETE');
  db.close();
}

/** Whether another connection can commit a write now (it does not wait: timeout 0). */
function canWrite(file: string): boolean {
  const db = new Database(file, { timeout: 0 });
  try {
    db.prepare('INSERT INTO patients(name) VALUES (?)').run('written meanwhile');
    return true;
  } catch (err) {
    if (!/locked|busy/i.test((err as Error).message)) throw err;
    return false;
  } finally {
    db.close();
  }
}

describe('a database read in place', () => {
  it('is held against writers until the backup has read it, and nothing is copied', async () => {
    const work = tempDir('cv-inplace-');
    const db = path.join(work, 'clinic.sqlite');
    rollbackDb(db, 400);
    const tmp = path.join(work, 'tmp');
    const { vault } = await Vault.init(path.join(work, 'vault'), PASS);

    const early = await startSqliteCopy(db, tmp);
    const read = await early.made;
    expect(read.path).toBe(db);
    expect(read.fd).toBeTypeOf('number');
    expect(fs.readdirSync(tmp)).toEqual([]);
    await expect(early.checked).resolves.toEqual({ integrityCheck: 'ok', tables: { encounters: 1200, invoices: 1200, patients: 400 } });
    expect(canWrite(db)).toBe(false);

    // Workers read it through the descriptor and leave it open: closing a descriptor of the file would drop this
    // process's POSIX locks on it, SQLite's read lock among them.
    const pool = new EnginePool(vault.location, vault.keys, vault.config);
    try {
      const r = await pool.run<ChunkResult>({ kind: 'chunk', path: read.path, fd: read.fd, offset: 0, length: read.size, fixed: read.pageSize, group: true });
      expect(r.bytesRead).toBe(read.size);
    } finally {
      await pool.close();
    }
    expect(canWrite(db)).toBe(false);

    const b = await backup(vault, { sqlite: [db], sqliteCopies: [early], appVersion: 'test', tmpDir: tmp });
    expect(b.warnings).toEqual([]);
    expect(b.snapshot.sources[0]).toMatchObject({ kind: 'sqlite', integrityCheck: 'ok', tables: { patients: 400 } });
    // Released when the backup ends; and the descriptor is closed.
    expect(canWrite(db)).toBe(true);
    expect(() => fs.fstatSync(read.fd!)).toThrow();
    expect(fs.readdirSync(tmp)).toEqual([]);

    // What was stored is the database as it was before that write.
    const target = path.join(work, 'restored');
    const res = await restore(vault, b.snapshot, { target });
    expect(res.databases[0]!.ok).toBe(true);
    const back = new Database(path.join(target, 'clinic.sqlite'), { readonly: true });
    expect(back.prepare('SELECT count(*) FROM patients').pluck().get()).toBe(400);
    back.close();
  });

  it('is released when the unlock fails before the backup starts', async () => {
    const work = tempDir('cv-inplace-');
    const db = path.join(work, 'clinic.sqlite');
    rollbackDb(db, 50);
    const early = await startSqliteCopy(db, path.join(work, 'tmp'));
    await early.made;
    expect(canWrite(db)).toBe(false);
    await early.cleanup();
    expect(canWrite(db)).toBe(true);
  });

  it('is copied instead in WAL mode, or above the size limit', async () => {
    const work = tempDir('cv-inplace-');
    const wal = path.join(work, 'wal.sqlite');
    makeClinicDb(wal, 50);
    const big = path.join(work, 'big.sqlite');
    rollbackDb(big, 50);
    const tmp = path.join(work, 'tmp');
    for (const [file, max] of [[wal, undefined], [big, 4096]] as const) {
      const early = await startSqliteCopy(file, tmp, { readInPlaceMax: max });
      const read = await early.made;
      expect(read.path).toBe(early.copyPath);
      expect(read.fd).toBeUndefined();
      expect(fs.existsSync(early.copyPath)).toBe(true);
      // Copied, the database is free for its writers at once.
      expect(canWrite(file)).toBe(true);
      await early.cleanup();
      expect(fs.readdirSync(tmp)).toEqual([]);
    }
  });
});

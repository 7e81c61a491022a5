// A backup taken while another process keeps writing to the database is a committed state of it.
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { Vault } from '../../src-main/engine/vault/vault.js';
import { backup } from '../../src-main/engine/backup.js';
import { startSqliteCopy } from '../../src-main/engine/sources/sqlite.js';
import { restore } from '../../src-main/engine/restore.js';
import { makeClinicDb, tempDir } from '../helpers/clinic.js';
import { PASS, ROOT } from '../helpers/cli.js';

for (const mode of ['WAL', 'DELETE']) {
  describe(`backup during writes (${mode} journal)`, () => {
    it('yields a database that passes integrity_check and matches a committed state', async () => {
      const work = tempDir();
      const dbFile = path.join(work, 'clinic.sqlite');
      makeClinicDb(dbFile, 2000);
      const writer = spawn(process.execPath, [path.join(ROOT, 'test', 'helpers', 'writer.mjs'), dbFile, mode], { stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((resolve) => writer.stdout!.once('data', () => resolve()));
      await new Promise((r) => setTimeout(r, 300));
      try {
        const { vault } = await Vault.init(path.join(work, 'vault'), PASS);
        const snaps = [];
        const tmpDir = path.join(work, 'tmp');
        for (let i = 0; i < 3; i++) snaps.push(await backup(vault, { sqlite: [dbFile], appVersion: 'test', tmpDir }));
        // And the CLI's way: the copy started before the backup, while the vault unlocks (startSqliteCopy).
        for (let i = 0; i < 2; i++) snaps.push(await backup(vault, { sqlite: [dbFile], sqliteCopies: [await startSqliteCopy(dbFile, tmpDir)], appVersion: 'test', tmpDir }));
        for (const [i, s] of snaps.entries()) {
          const src = s.snapshot.sources[0]!;
          expect(src.kind).toBe('sqlite');
          if (src.kind !== 'sqlite') return;
          expect(src.integrityCheck).toBe('ok');
          expect(src.tables.events).toBeGreaterThan(0);
          const target = path.join(work, `r${i}`);
          const res = await restore(vault, s.snapshot, { target });
          expect(res.databases[0]!.ok).toBe(true);
          const db = new Database(path.join(target, 'clinic.sqlite'), { readonly: true });
          const n = db.prepare('SELECT n FROM counter').pluck().get() as number;
          const events = db.prepare('SELECT count(*) FROM events').pluck().get() as number;
          db.close();
          expect(events).toBe(n); // a committed state: the invariant holds
          expect(events).toBe(src.tables.events);
        }
        // the writer really was writing between backups
        const counts = snaps.map((s) => (s.snapshot.sources[0]!.kind === 'sqlite' ? s.snapshot.sources[0]!.tables.events! : 0));
        expect(counts[4]!).toBeGreaterThan(counts[2]!);
        expect(counts[2]!).toBeGreaterThan(counts[0]!);
      } finally {
        writer.kill('SIGKILL');
      }
    });
  });
}

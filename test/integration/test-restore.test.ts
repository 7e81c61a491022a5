// test-restore: the database is restored in full into a scratch folder and checked, a sample of media files is
// restored and re-hashed, nothing is left behind, and the result is recorded against the snapshot (the app's
// "restorable, proved on" badge). Damage makes it fail loudly, and that is recorded too.
import Database from 'better-sqlite3';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, cliEnv } from '../helpers/cli.js';
import { makeClinicDb, makeMedia, tempDir } from '../helpers/clinic.js';

describe('test-restore', () => {
  it('proves a backup restorable, records it per snapshot, and fails loudly on damage', () => {
    const work = tempDir('cv-testrestore-');
    const media = path.join(work, 'media');
    const db = path.join(work, 'clinic.sqlite');
    const vault = path.join(work, 'vault');
    const scratch = path.join(work, 'tmp');
    fs.mkdirSync(scratch);
    const env = cliEnv(path.join(work, 'home'), { TMPDIR: scratch });
    makeClinicDb(db, 300);
    makeMedia(media, 6, 6);
    expect(cli(['init', '--vault', vault], env).code).toBe(0);
    const b = cli(['backup', '--vault', vault, '--sqlite', db, '--folder', media, '--json'], env);
    expect(b.code, b.stderr).toBe(0);
    const snapshot = JSON.parse(b.stdout).id as string;

    const r = cli(['test-restore', '--vault', vault, '--sample', '5', '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report).toMatchObject({ snapshot, ok: true });
    expect(report.databases).toHaveLength(1);
    expect(report.databases[0]).toMatchObject({ kind: 'sqlite', ok: true, integrityCheck: 'ok' });
    expect(report.databases[0].tables.patients).toEqual({ expected: 300, actual: 300 });
    expect(report.media).toMatchObject({ sampled: 5, of: 12, ok: 5, matchesOriginal: 5, failed: [] });
    expect(report.rto.estimatedFullMs).toBeGreaterThanOrEqual(report.databases[0].durationMs);
    expect(fs.readdirSync(scratch)).toEqual([]); // scratch copies are gone

    const text = cli(['test-restore', '--vault', vault, '--sample', '100'], env);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/media: 12 of 12 sampled file\(s\) \(out of 12\) restored identical, 12 also equal to the original on disk/);
    expect(text.stdout).toMatch(/is restorable, proved now/);
    const status = cli(['status'], env).stdout;
    expect(status).toMatch(new RegExp(`restorable, proved on \\d{4}-\\d\\d-\\d\\d \\(backup ${snapshot.slice(0, 8)}`));
    const listed = JSON.parse(cli(['snapshots', '--vault', vault, '--json'], env).stdout);
    expect(listed[0].lastTestRestore).toMatchObject({ ok: true });
    expect(cli(['snapshots', '--vault', vault], env).stdout).toMatch(/restorable, proved on \d{4}-/);
    const inv = new Database(path.join(work, 'home', 'inventory.sqlite'), { readonly: true });
    const rows = inv.prepare("SELECT snapshot_id, ok FROM verifications WHERE kind = 'test-restore'").all();
    expect(rows).toEqual([{ snapshot_id: snapshot, ok: 1 }, { snapshot_id: snapshot, ok: 1 }]);
    expect(inv.prepare("SELECT count(*) FROM audit WHERE action = 'test-restore'").pluck().get()).toBe(2);
    inv.close();

    // Damage every pack in the middle: the test restore fails, says so, and the failure is what the badge shows.
    for (const sub of fs.readdirSync(path.join(vault, 'data'))) {
      for (const f of fs.readdirSync(path.join(vault, 'data', sub))) {
        const p = path.join(vault, 'data', sub, f);
        const buf = fs.readFileSync(p);
        buf[Math.floor(buf.length / 3)]! ^= 0xff;
        fs.writeFileSync(p, buf);
      }
    }
    const bad = cli(['test-restore', '--vault', vault, '--sample', '100'], env);
    expect(bad.code).toBe(5);
    expect(bad.stdout).toMatch(/FAILED/);
    expect(bad.stdout).toMatch(/did NOT pass the test restore/);
    expect(cli(['status'], env).stdout).toMatch(/test restore FAILED on/);
    expect(fs.readdirSync(scratch)).toEqual([]);
  });
});

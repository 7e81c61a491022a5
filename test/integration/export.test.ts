// export: the bundle opens with Debian's real `age` (passphrase typed on a terminal) and `tar`, with no ClinicVault,
// and every file in it equals the original; sha256sum -c passes on its SHA256SUMS. A migration bundle carries the
// checklist and the rollback plan and tags the backup pre-migration, which retention then keeps.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { cli, cliEnv, ROOT } from '../helpers/cli.js';
import { dbContent, hashTree, makeClinicDb, makeMedia, tempDir, writeFile } from '../helpers/clinic.js';

const EXPORT_PASS = 'export pass for the auditor 2026';
const missing = ['age', 'tar', 'sha256sum', 'python3'].filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
if (missing.length && process.env.CI) throw new Error(`export tests need ${missing.join(', ')}; CI requires them`);
if (missing.length) console.warn(`export tests skipped: ${missing.join(', ')} not installed`);

/** Decrypt with the real age (it only reads passphrases from a terminal; the helper types it on a pty). */
function ageDecrypt(file: string, out: string, pass: string): { code: number; stderr: string } {
  const r = spawnSync('python3', [path.join(ROOT, 'test', 'helpers', 'age-decrypt.py'), file, out], { env: { ...process.env, AGE_TEST_PASSPHRASE: pass }, encoding: 'utf8' });
  return { code: r.status ?? -1, stderr: r.stderr };
}

function openBundle(file: string, dir: string): string {
  fs.mkdirSync(dir, { recursive: true });
  const tar = path.join(dir, 'bundle.tar');
  const d = ageDecrypt(file, tar, EXPORT_PASS);
  expect(d.code, d.stderr).toBe(0);
  fs.mkdirSync(path.join(dir, 'x'));
  execFileSync('tar', ['-xf', tar, '-C', path.join(dir, 'x')]);
  const [folder] = fs.readdirSync(path.join(dir, 'x'));
  return path.join(dir, 'x', folder!);
}

describe.skipIf(missing.length > 0)('export', () => {
  let work: string;
  let vault: string;
  let media: string;
  let db: string;
  let env: NodeJS.ProcessEnv;
  beforeAll(() => {
    work = tempDir('cv-export-');
    vault = path.join(work, 'vault');
    media = path.join(work, 'media');
    db = path.join(work, 'clinic.sqlite');
    env = cliEnv(path.join(work, 'home'), { CLINICVAULT_EXPORT_PASSPHRASE: EXPORT_PASS });
    makeClinicDb(db, 300);
    makeMedia(media, 5, 4);
    writeFile(path.join(media, 'Röntgen Ünal', 'empty.txt'), '');
    writeFile(path.join(media, 'big', 'scan.pdf'), Buffer.alloc(3_000_000, 7)); // several chunks, exact 64 KiB multiples
    fs.mkdirSync(path.join(media, 'empty-folder'));
    expect(cli(['init', '--vault', vault], env).code).toBe(0);
    const b = cli(['backup', '--vault', vault, '--sqlite', db, '--folder', media], env);
    expect(b.code, b.stderr).toBe(0);
  });

  it('opens with age and tar alone, and every file equals the original', () => {
    const out = path.join(work, 'clinic.tar.age');
    const r = cli(['export', '--vault', vault, '--out', out, '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout);
    const raw = fs.readFileSync(out);
    expect(raw.subarray(0, 32).toString()).toMatch(/^age-encryption\.org\/v1\n-> scrypt /);
    expect(raw.includes('Referral letter')).toBe(false);
    expect(raw.includes('Patient')).toBe(false);

    const folder = openBundle(out, path.join(work, 'open1'));
    expect(path.basename(folder)).toBe(res.folder);
    expect(hashTree(path.join(folder, 'media'))).toEqual(hashTree(media));
    expect(fs.statSync(path.join(folder, 'media', 'empty-folder')).isDirectory()).toBe(true);
    expect(dbContent(path.join(folder, 'clinic.sqlite'))).toEqual(dbContent(db));
    const sums = spawnSync('sha256sum', ['-c', '--quiet', 'SHA256SUMS'], { cwd: folder, encoding: 'utf8' });
    expect(sums.status, sums.stdout + sums.stderr).toBe(0);
    expect(fs.readFileSync(path.join(folder, 'SHA256SUMS'), 'utf8').trim().split('\n')).toHaveLength(Object.keys(hashTree(media)).length + 1);
    const manifest = JSON.parse(fs.readFileSync(path.join(folder, 'manifest.json'), 'utf8'));
    expect(manifest.snapshot.id).toBe(res.snapshot);
    expect(manifest.sources.find((s: { kind: string }) => s.kind === 'sqlite').tables.patients).toBe(300);
    expect(fs.readFileSync(path.join(folder, 'README.txt'), 'utf8')).toMatch(/age --decrypt/);
    expect(fs.existsSync(path.join(folder, 'MIGRATION.md'))).toBe(false);

    // The wrong passphrase does not open it; the bundle is never overwritten.
    expect(ageDecrypt(out, path.join(work, 'nope.tar'), 'not the passphrase at all').code).not.toBe(0);
    const before = fs.readFileSync(out);
    const again = cli(['export', '--vault', vault, '--out', out], env);
    expect(again.code).toBe(9);
    expect(again.stderr).toMatch(/already exists; nothing was overwritten/);
    expect(fs.readFileSync(out).equals(before)).toBe(true);
    const weak = cli(['export', '--vault', vault, '--out', path.join(work, 'weak.tar.age')], { ...env, CLINICVAULT_EXPORT_PASSPHRASE: 'short' });
    expect(weak.code).toBe(2);
    expect(fs.existsSync(path.join(work, 'weak.tar.age'))).toBe(false);
  });

  it('a migration bundle adds the checklist and rollback plan, and tags the backup pre-migration', () => {
    const out = path.join(work, 'migration.tar.age');
    const r = cli(['export', '--vault', vault, '--out', out, '--migration', '--from-version', '4.2.1', '--to-version', '5.0.0', '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout);
    expect(res.tagged).toBe(true);
    const folder = openBundle(out, path.join(work, 'open2'));
    const plan = fs.readFileSync(path.join(folder, 'MIGRATION.md'), 'utf8');
    expect(plan).toMatch(/# Migration from 4\.2\.1 to 5\.0\.0/);
    expect(plan).toMatch(/\| patients \| 300 \|/);
    expect(plan).toContain(`--snapshot ${res.snapshot}`);
    expect(plan).toMatch(/Reinstall the clinic software version 4\.2\.1/);
    const list = JSON.parse(cli(['snapshots', '--vault', vault, '--json'], env).stdout) as Array<{ id: string; tags: string[] }>;
    expect(list).toHaveLength(1);
    expect(list[0]!.id).toBe(res.snapshot);
    expect(list[0]!.tags).toContain('pre-migration');
    // Newer backups come; keep-last 1 still keeps the pre-migration one.
    writeFile(path.join(media, 'after.txt'), 'after the migration');
    expect(cli(['backup', '--vault', vault, '--sqlite', db, '--folder', media], env).code).toBe(0);
    const f = JSON.parse(cli(['forget', '--vault', vault, '--keep-last', '1', '--dry-run', '--json'], env).stdout);
    expect(f.forgotten).toEqual([]);
    expect(f.kept.find((k: { id: string }) => k.id === res.snapshot).reasons).toEqual(['tag pre-migration']);
  });
});

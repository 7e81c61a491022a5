// npm run demo: build a demo clinic (SQLite practice database + media folder of photos and PDFs) and a demo
// "backup drive" folder, then run the real clinicvault command through a week's worth of the main job:
// init, backup, one simulated clinic day, a second backup, verify --read-data, restore, and prove the restore equal.
import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatBytes } from '../src-main/engine/errors.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const DEMO = path.join(ROOT, '.demo');
const CLINIC = path.join(DEMO, 'clinic');
const DRIVE = path.join(DEMO, 'backup-drive');
const VAULT = path.join(DRIVE, 'ClinicVault');
const RESTORE = path.join(DEMO, 'restore-check');
const BIN = path.join(ROOT, 'bin', 'clinicvault.js');
const env = { ...process.env, CLINICVAULT_HOME: path.join(DEMO, 'app-data'), CLINICVAULT_PASSPHRASE: 'demo clinic passphrase - not for real use' };

let seed = 42;
const rnd = (): number => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
const pick = <T>(a: T[]): T => a[Math.floor(rnd() * a.length)]!;
const FIRST = 'Anna Ben Carla David Elena Farid Greta Hugo Ines Jonas Kira Lars Maja Nils Olga Paul Zoë Çelik Jürgen Ayşe'.split(' ');
const LAST = 'Müller Schmidt Weber Yilmaz Kaya Nowak Rossi Garcia Jansen Nielsen Öztürk Horvat'.split(' ');
const REASONS = ['cough', 'fever', 'back pain', 'rash', 'hypertension control', 'diabetes review', 'skin lesion', 'wound dressing change'];

function run(args: string[]): { out: string; ms: number } {
  const t = performance.now();
  const r = spawnSync(process.execPath, [BIN, ...args], { env, encoding: 'utf8' });
  const ms = performance.now() - t;
  if (r.status !== 0) {
    process.stderr.write(r.stderr);
    throw new Error(`clinicvault ${args[0]} failed with exit code ${r.status}`);
  }
  return { out: r.stdout, ms };
}

function buildClinic(): void {
  fs.mkdirSync(CLINIC, { recursive: true });
  const db = new Database(path.join(CLINIC, 'practice.sqlite'));
  db.pragma('journal_mode = WAL');
  db.exec(`
    CREATE TABLE patients (id INTEGER PRIMARY KEY, first_name TEXT, last_name TEXT, born TEXT, phone TEXT, allergies TEXT, created_at TEXT);
    CREATE TABLE encounters (id INTEGER PRIMARY KEY, patient_id INTEGER REFERENCES patients(id), at TEXT, type TEXT, reason TEXT);
    CREATE TABLE clinical_notes (id INTEGER PRIMARY KEY, encounter_id INTEGER REFERENCES encounters(id), body TEXT, updated_at TEXT);
    CREATE TABLE invoices (id INTEGER PRIMARY KEY, encounter_id INTEGER REFERENCES encounters(id), amount_cents INTEGER, status TEXT);
    CREATE TABLE audit_log (id INTEGER PRIMARY KEY, at TEXT, user TEXT, action TEXT);
    CREATE INDEX enc_by_patient ON encounters(patient_id);`);
  db.transaction(() => {
    for (let p = 1; p <= 4000; p++) {
      db.prepare('INSERT INTO patients VALUES (?,?,?,?,?,?,?)').run(p, pick(FIRST), pick(LAST), `19${40 + Math.floor(rnd() * 60)}-0${1 + Math.floor(rnd() * 9)}-1${Math.floor(rnd() * 9)}`, `+49 30 ${Math.floor(rnd() * 1e7)}`, pick(['none known', 'penicillin', 'latex']), '2021-01-01');
      for (let e = 0; e < 6; e++) {
        const enc = db.prepare('INSERT INTO encounters(patient_id, at, type, reason) VALUES (?,?,?,?)').run(p, `202${Math.floor(rnd() * 5)}-0${1 + Math.floor(rnd() * 9)}-1${Math.floor(rnd() * 9)}T09:30:00+01:00`, 'consultation', pick(REASONS));
        db.prepare('INSERT INTO clinical_notes(encounter_id, body, updated_at) VALUES (?,?,?)').run(enc.lastInsertRowid, `S: ${pick(REASONS)} for ${1 + Math.floor(rnd() * 10)} days. O: vitals normal. A: ${pick(REASONS)}. P: review in two weeks. `.repeat(4), '2024-01-01');
        db.prepare('INSERT INTO invoices(encounter_id, amount_cents, status) VALUES (?,?,?)').run(enc.lastInsertRowid, 2500 + Math.floor(rnd() * 10000), pick(['paid', 'open']));
        db.prepare('INSERT INTO audit_log(at, user, action) VALUES (?,?,?)').run('2024-01-01T10:00:00Z', pick(['dr.weber', 'reception']), 'view chart');
      }
    }
  })();
  db.close();
  for (let i = 0; i < 24; i++) {
    const file = path.join(CLINIC, 'media', 'clinical_media', `encounter_${1000 + i}`, `photo_${i}.jpg`);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), randomBytes(1_000_000 + Math.floor(rnd() * 2_000_000))]));
  }
  for (let i = 0; i < 60; i++) {
    const file = path.join(CLINIC, 'media', 'documents', `patient_${1 + (i % 20)}`, `referral_${i}.pdf`);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, `%PDF-1.4\n% Referral ${i}\n` + `Dear colleague, thank you for seeing ${pick(FIRST)} ${pick(LAST)}. `.repeat(1500) + randomBytes(20_000).toString('base64'));
  }
}

function clinicDay(): void {
  const db = new Database(path.join(CLINIC, 'practice.sqlite'));
  db.transaction(() => {
    db.prepare("UPDATE clinical_notes SET body = body || ' Addendum: labs normal.', updated_at = '2026-11-22' WHERE id % 100 = 7").run();
    db.prepare("UPDATE invoices SET status = 'paid' WHERE id % 90 = 3").run();
    for (let i = 0; i < 60; i++) {
      const enc = db.prepare('INSERT INTO encounters(patient_id, at, type, reason) VALUES (?,?,?,?)').run(1 + Math.floor(rnd() * 4000), '2026-11-22T10:00:00+01:00', 'follow-up', pick(REASONS));
      db.prepare('INSERT INTO clinical_notes(encounter_id, body, updated_at) VALUES (?,?,?)').run(enc.lastInsertRowid, 'Seen today. Plan unchanged.', '2026-11-22');
    }
  })();
  db.close();
  const media = path.join(CLINIC, 'media');
  const photo = path.join(media, 'clinical_media', 'encounter_2000', 'photo_new.jpg');
  fs.mkdirSync(path.dirname(photo), { recursive: true });
  fs.writeFileSync(photo, Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), randomBytes(2_500_000)]));
  fs.appendFileSync(path.join(media, 'documents', 'patient_3', 'referral_2.pdf'), '\n% signed copy attached\n');
  fs.rmSync(path.join(media, 'documents', 'patient_5', 'referral_4.pdf'));
  fs.renameSync(path.join(media, 'documents', 'patient_6', 'referral_5.pdf'), path.join(media, 'documents', 'patient_6', 'referral_5_final.pdf'));
}

function treeHashes(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string, rel: string): void => {
    for (const n of fs.readdirSync(d).sort()) {
      const a = path.join(d, n);
      const r = rel ? `${rel}/${n}` : n;
      if (fs.statSync(a).isDirectory()) walk(a, r);
      else out.set(r, createHash('sha256').update(fs.readFileSync(a)).digest('hex'));
    }
  };
  walk(root, '');
  return out;
}

function dbDump(file: string): string {
  const db = new Database(file, { readonly: true });
  const h = createHash('sha256');
  for (const t of db.prepare("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name").pluck().all() as string[]) {
    for (const row of db.prepare(`SELECT * FROM "${t}" ORDER BY rowid`).raw().iterate()) h.update(JSON.stringify(row));
  }
  db.close();
  return h.digest('hex');
}

function dirSize(d: string): number {
  let n = 0;
  for (const e of fs.readdirSync(d, { withFileTypes: true })) n += e.isDirectory() ? dirSize(path.join(d, e.name)) : fs.statSync(path.join(d, e.name)).size;
  return n;
}

function main(): void {
  fs.rmSync(DEMO, { recursive: true, force: true });
  fs.mkdirSync(DRIVE, { recursive: true });
  const tGen = performance.now();
  buildClinic();
  const clinicBytes = dirSize(CLINIC);
  console.log(`Demo clinic built in ${((performance.now() - tGen) / 1000).toFixed(1)} s: ${formatBytes(clinicBytes)} (database + ${treeHashes(path.join(CLINIC, 'media')).size} media files) in ${CLINIC}`);
  const src = ['--sqlite', path.join(CLINIC, 'practice.sqlite'), '--folder', path.join(CLINIC, 'media')];
  run(['init', '--vault', VAULT, '--json']);
  console.log(`Vault created on the demo drive: ${VAULT} (recovery key printed once by "init"; not shown in the demo)`);
  const b1 = run(['backup', '--vault', VAULT, ...src, '--label', 'first', '--json']);
  const s1 = JSON.parse(b1.out) as { id: string; totals: { bytesRead: number; bytesAdded: number } };
  const size1 = dirSize(VAULT);
  clinicDay();
  const b2 = run(['backup', '--vault', VAULT, ...src, '--json']);
  const s2 = JSON.parse(b2.out) as { id: string; totals: { bytesRead: number; bytesAdded: number; filesNew: number; filesChanged: number; filesUnchanged: number } };
  const size2 = dirSize(VAULT);
  const v = run(['verify', '--vault', VAULT, '--read-data', '--json']);
  const vr = JSON.parse(v.out) as { ok: boolean; chunksChecked: number };
  const r = run(['restore', '--vault', VAULT, '--snapshot', 'latest', '--target', RESTORE, '--json']);
  const rr = JSON.parse(r.out) as { ok: boolean; files: number; databases: Array<{ ok: boolean }> };
  const mediaSame = JSON.stringify([...treeHashes(path.join(CLINIC, 'media'))]) === JSON.stringify([...treeHashes(path.join(RESTORE, 'media'))]);
  const dbSame = dbDump(path.join(CLINIC, 'practice.sqlite')) === dbDump(path.join(RESTORE, 'practice.sqlite'));
  const t = run(['test-restore', '--vault', VAULT, '--sample', '10', '--json']);
  const tr = JSON.parse(t.out) as { ok: boolean; media: { ok: number; sampled: number }; rto: { estimatedFullMs: number } };
  const sp = JSON.parse(run(['space', '--vault', VAULT, '--json']).out) as { snapshots: Array<{ uniqueBytes: number }>; vault: { reclaimableBytes: number } };
  const logical = clinicBytes + dirSize(CLINIC);
  console.log('');
  console.log('Summary');
  console.log(`  first backup : ${(b1.ms / 1000).toFixed(1)} s, read ${formatBytes(s1.totals.bytesRead)}, vault ${formatBytes(size1)} (${s1.id.slice(0, 8)})`);
  console.log(`  clinic day   : 60 visits, ~1% of notes edited, 1 new photo, 1 letter changed, 1 deleted, 1 renamed`);
  console.log(`  second backup: ${(b2.ms / 1000).toFixed(1)} s, ${s2.totals.filesNew} new / ${s2.totals.filesChanged} changed / ${s2.totals.filesUnchanged} unchanged files, added ${formatBytes(s2.totals.bytesAdded)} (${s2.id.slice(0, 8)})`);
  console.log(`  vault size   : ${formatBytes(size2)} for two full backups of ${formatBytes(logical)} in all (dedup ratio ${(logical / size2).toFixed(2)}x)`);
  console.log(`  verify       : ${(v.ms / 1000).toFixed(1)} s, ${vr.chunksChecked} chunks read and authenticated: ${vr.ok ? 'OK' : 'PROBLEMS'}`);
  console.log(`  restore      : ${(r.ms / 1000).toFixed(1)} s, ${rr.files} files into ${RESTORE}`);
  console.log(`  proof        : media ${mediaSame ? 'identical byte for byte' : 'DIFFERENT'}; database ${dbSame && rr.databases.every((d) => d.ok) ? 'logically equal, integrity ok, row counts match' : 'DIFFERENT'}`);
  console.log(`  test restore : ${(t.ms / 1000).toFixed(1)} s, database checked, ${tr.media.ok} of ${tr.media.sampled} sampled files re-hashed: ${tr.ok ? 'restorable' : 'FAILED'} (full restore estimated at ${(tr.rto.estimatedFullMs / 1000).toFixed(1)} s)`);
  console.log(`  space        : the first backup alone holds ${formatBytes(sp.snapshots[0]?.uniqueBytes ?? 0)}, the second ${formatBytes(sp.snapshots[1]?.uniqueBytes ?? 0)}; ${formatBytes(sp.vault.reclaimableBytes)} reclaimable`);
  if (!(vr.ok && rr.ok && mediaSame && dbSame && tr.ok)) {
    console.error('Demo FAILED: the restore is not equal to the clinic.');
    process.exit(1);
  }
}

main();

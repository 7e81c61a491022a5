// Writes test/fixtures/vault-v<N>: a small vault of the current format with a known passphrase and recovery key
// file, plus expected.json (file hashes, table counts). Run once per format version; the fixtures are committed so
// that a format change that cannot read old vaults fails test/integration/fixture-vault.test.ts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import Database from 'better-sqlite3';
import { Vault, FORMAT_VERSION } from '../src-main/engine/vault/vault.js';
import { backup } from '../src-main/engine/backup.js';

const PASSPHRASE = 'fixture passphrase v1';

async function main(): Promise<void> {
  process.env.CLINICVAULT_KDF = 'test';
  const root = path.resolve('test', 'fixtures', `vault-v${FORMAT_VERSION}`);
  if (fs.existsSync(root)) throw new Error(`${root} exists; fixtures of a released format are never rewritten`);
  const src = fs.mkdtempSync('/tmp/cv-fixture-');
  const media = path.join(src, 'media');
  fs.mkdirSync(path.join(media, 'patient_1'), { recursive: true });
  fs.writeFileSync(path.join(media, 'patient_1', 'consent.pdf'), '%PDF-1.4 consent form '.repeat(500));
  fs.writeFileSync(path.join(media, 'patient_1', 'wound.jpg'), createHash('sha512').update('photo').digest().toString('hex').repeat(2000));
  fs.writeFileSync(path.join(media, 'Übersicht.txt'), 'Praxis Übersicht\n');
  const dbFile = path.join(src, 'clinic.sqlite');
  const db = new Database(dbFile);
  db.exec(`CREATE TABLE patients(id INTEGER PRIMARY KEY, name TEXT); CREATE TABLE visits(id INTEGER PRIMARY KEY, patient_id INTEGER, note TEXT);`);
  for (let i = 1; i <= 40; i++) db.prepare('INSERT INTO patients(name) VALUES (?)').run(`Patient ${i}`);
  for (let i = 1; i <= 120; i++) db.prepare('INSERT INTO visits(patient_id, note) VALUES (?, ?)').run(1 + (i % 40), `note ${i}`);
  db.close();
  const vaultDir = path.join(root, 'vault');
  const { vault, recoveryKey } = await Vault.init(vaultDir, PASSPHRASE);
  await backup(vault, { sqlite: [dbFile], folders: [media], appVersion: 'fixture', host: 'fixture-host', tags: ['fixture'] });
  fs.appendFileSync(path.join(media, 'Übersicht.txt'), 'zweite Zeile\n');
  await backup(vault, { sqlite: [dbFile], folders: [media], appVersion: 'fixture', host: 'fixture-host', tags: ['fixture'] });
  const hashes: Record<string, string> = {};
  const walk = (d: string, rel: string): void => {
    for (const n of fs.readdirSync(d).sort()) {
      const a = path.join(d, n);
      const r = rel ? `${rel}/${n}` : n;
      if (fs.statSync(a).isDirectory()) walk(a, r);
      else hashes[r] = createHash('sha256').update(fs.readFileSync(a)).digest('hex');
    }
  };
  walk(media, 'media');
  fs.writeFileSync(path.join(root, 'passphrase.txt'), PASSPHRASE);
  fs.writeFileSync(path.join(root, 'recovery-key.txt'), recoveryKey);
  fs.writeFileSync(path.join(root, 'expected.json'), JSON.stringify({ formatVersion: FORMAT_VERSION, snapshots: 2, latest: { media: hashes, tables: { patients: 40, visits: 120 } } }, null, 2));
  fs.rmSync(src, { recursive: true });
  console.log(`wrote ${root}`);
}

await main();

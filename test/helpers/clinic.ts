// Test helpers: a small but realistic clinic (SQLite with related tables, a media folder of photo-like and
// PDF-like files), tree comparison, and a temp-dir factory that cleans up.
import Database from 'better-sqlite3';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';

const made: string[] = [];

/** A fresh folder under the system's temp folder, removed after the test file (test/setup.ts). */
export function tempDir(prefix = 'cv-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  made.push(dir);
  return dir;
}

/** Remove every folder tempDir made in this test file: a run of the suite otherwise left ~15 GB behind. */
export function removeTempDirs(): void {
  for (const dir of made.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}

export function makeClinicDb(file: string, patients = 300): void {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.exec(`
    CREATE TABLE patients (id INTEGER PRIMARY KEY, name TEXT NOT NULL, born TEXT, allergies TEXT);
    CREATE TABLE encounters (id INTEGER PRIMARY KEY, patient_id INTEGER NOT NULL REFERENCES patients(id), at TEXT, reason TEXT, note TEXT);
    CREATE TABLE invoices (id INTEGER PRIMARY KEY, encounter_id INTEGER REFERENCES encounters(id), amount_cents INTEGER, paid INTEGER);
    CREATE INDEX enc_patient ON encounters(patient_id);`);
  const ins = db.transaction(() => {
    const p = db.prepare('INSERT INTO patients(name, born, allergies) VALUES (?, ?, ?)');
    const e = db.prepare('INSERT INTO encounters(patient_id, at, reason, note) VALUES (?, ?, ?, ?)');
    const inv = db.prepare('INSERT INTO invoices(encounter_id, amount_cents, paid) VALUES (?, ?, ?)');
    for (let i = 1; i <= patients; i++) {
      p.run(`Patient Ünal-${i} Müller`, `19${50 + (i % 50)}-0${1 + (i % 9)}-1${i % 10}`, i % 7 ? 'none known' : 'penicillin');
      for (let j = 0; j < 3; j++) {
        const r = e.run(i, `2024-0${1 + (j % 9)}-1${i % 10}T10:00:00Z`, 'follow-up', `Patient reports improvement. Plan: review in ${j + 1} weeks. `.repeat(3));
        inv.run(r.lastInsertRowid, 4500 + j * 100, j % 2);
      }
    }
  });
  ins();
  db.close();
}

export function writeFile(file: string, data: Buffer | string, mtime?: Date): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, data);
  if (mtime) fs.utimesSync(file, mtime, mtime);
}

export function makeMedia(root: string, photos = 4, docs = 6): void {
  for (let i = 0; i < photos; i++) {
    writeFile(path.join(root, 'clinical_media', `encounter_${i}`, `photo_${i}.jpg`), Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), randomBytes(300_000 + i * 50_000)]));
  }
  for (let i = 0; i < docs; i++) {
    const text = `%PDF-1.4\nReferral letter ${i}\n` + `Dear colleague, the patient was seen for follow-up. `.repeat(2000 + i * 100);
    writeFile(path.join(root, 'documents', `patient_${i % 3}`, `letter_${i}.pdf`), text);
  }
}

/** Map of relative path -> sha256 for every file under root. */
export function hashTree(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string, rel: string): void => {
    for (const name of fs.readdirSync(dir).sort()) {
      const abs = path.join(dir, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = fs.lstatSync(abs);
      if (st.isDirectory()) walk(abs, r);
      else if (st.isFile()) out[r] = createHash('sha256').update(fs.readFileSync(abs)).digest('hex');
    }
  };
  walk(root, '');
  return out;
}

/** Logical content of a SQLite database: every table's rows, ordered, as JSON. */
export function dbContent(file: string): Record<string, unknown[]> {
  const db = new Database(file, { readonly: true });
  try {
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name").pluck().all() as string[];
    const out: Record<string, unknown[]> = {};
    for (const t of tables) out[t] = db.prepare(`SELECT * FROM "${t}" ORDER BY rowid`).raw().all();
    return out;
  } finally {
    db.close();
  }
}

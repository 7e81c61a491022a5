// A clinic app stand-in: keeps writing to a SQLite database until killed. Each transaction adds an event and
// bumps a counter, so in any committed state counter.n equals the number of events.
import Database from 'better-sqlite3';

const [file, mode] = process.argv.slice(2);
const db = new Database(file, { timeout: 10000 });
db.pragma(`journal_mode = ${mode ?? 'WAL'}`);
db.exec(`CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, payload TEXT);
         CREATE TABLE IF NOT EXISTS counter (k INTEGER PRIMARY KEY, n INTEGER);
         INSERT OR IGNORE INTO counter VALUES (1, 0);`);
const ins = db.prepare('INSERT INTO events(payload) VALUES (?)');
const bump = db.prepare('UPDATE counter SET n = n + 1 WHERE k = 1');
const tx = db.transaction((i) => {
  ins.run(`visit note ${i} `.repeat(20));
  bump.run();
});
process.stdout.write('ready\n');
for (let i = 0; ; i++) {
  try {
    tx(i);
  } catch (err) {
    if (!String(err).includes('busy') && !String(err).includes('locked')) throw err;
  }
}

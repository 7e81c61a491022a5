// A thread that runs one SQLite check of a database file and exits: the CLI's check of a database copy while scrypt
// unlocks the vault (EarlySqliteCopy.checkWhile), so the main thread stays free for whatever ends first.
import { parentPort, workerData } from 'node:worker_threads';
import { checkDatabaseFile } from './sqlite.js';

const { path, quick } = workerData as { path: string; quick: boolean };
try {
  parentPort!.postMessage({ ok: true, value: checkDatabaseFile(path, quick) });
} catch (err) {
  parentPort!.postMessage({ ok: false, message: (err as Error).message });
}

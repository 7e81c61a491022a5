// A thread for one database: it runs one SQLite check of a file and exits (the CLI's check of a database copy while
// scrypt unlocks the vault, EarlySqliteCopy.checkWhile), or, given holdMax, holds a read transaction on a database
// the backup reads in place, checks it under that lock, and ends the transaction when told to (holdAndCheck,
// decision 0034). Either way the main thread stays free for whatever ends first.
import { parentPort, workerData } from 'node:worker_threads';
import { checkDatabaseFile, holdAndCheck } from './sqlite.js';

const { path, quick, holdMax } = workerData as { path: string; quick: boolean; holdMax?: number };
if (holdMax !== undefined) {
  holdAndCheck(path, quick, holdMax, parentPort!);
} else {
  try {
    parentPort!.postMessage({ ok: true, value: checkDatabaseFile(path, quick) });
  } catch (err) {
    parentPort!.postMessage({ ok: false, message: (err as Error).message });
  }
}

// Folder source: walk the clinic's media root, honouring exclude patterns, and report what could not be read
// instead of failing the backup.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import picomatch from 'picomatch';

export const DEFAULT_EXCLUDES = ['Thumbs.db', '.DS_Store', 'desktop.ini', '*.tmp', '~$*', '.~lock.*#'];

export interface WalkedFile {
  rel: string;
  abs: string;
  type: 'file' | 'dir';
  size: number;
  mode: number;
  mtimeMs: number;
  ino: number;
}

export interface WalkResult {
  files: WalkedFile[];
  skipped: Array<{ path: string; reason: string }>;
}

export function describeFsError(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  switch (e.code) {
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EBUSY':
      return 'file is locked by another program';
    case 'ENOENT':
      return 'file disappeared during the backup';
    case 'EIO':
      return 'read error on the disk';
    default:
      return e.message ?? String(err);
  }
}

/** A file-system call slower than this is a slow one: a share, or a disk whose metadata is not in memory. */
const SLOW_CALL_MS = 0.5;
/** How many slow calls, a quarter of all calls at least, switch the rest of a walk to parallel calls. A busy
 * machine makes a few calls slow now and then (the thread is preempted), which must not switch a local walk. */
const SLOW_CALLS = 8;
/** A walk by direct calls hands the thread back to its event loop this often (the workers' messages wait on it). */
const YIELD_EVERY_MS = 10;

/** `slowCallMs`: for tests, which make every call count as slow with -1. */
export async function walkFolder(root: string, excludes: string[], { slowCallMs = SLOW_CALL_MS } = {}): Promise<WalkResult> {
  const isExcluded = picomatch(excludes, { basename: true, dot: true, nocase: process.platform !== 'linux' });
  const files: WalkedFile[] = [];
  const skipped: WalkResult['skipped'] = [];
  // On a local disk the walk calls readdir and lstat directly: on the bench's 1,772 media entries that took 14-27 ms
  // of CPU against 130-220 ms through the thread pool's promises, and the backup's workers need both cores. A share
  // answers each call in a millisecond or more instead of microseconds; once calls are that slow, every entry of a
  // folder is looked at at once through the thread pool, which answers them in parallel.
  let parallel = false;
  let calls = 0;
  let slow = 0;
  let lastYield = performance.now();
  function timed<T>(fn: () => T): T {
    const t = performance.now();
    try {
      return fn();
    } finally {
      calls++;
      if (performance.now() - t > slowCallMs && ++slow >= SLOW_CALLS && slow * 4 >= calls) parallel = true;
    }
  }
  async function breathe(): Promise<void> {
    if (performance.now() - lastYield < YIELD_EVERY_MS) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
    lastYield = performance.now();
  }
  function lstatNow(abs: string): fs.Stats | Error {
    try {
      return timed(() => fs.lstatSync(abs));
    } catch (err) {
      return err as Error;
    }
  }
  async function visit(relDir: string): Promise<void> {
    const absDir = relDir ? path.join(root, ...relDir.split('/')) : root;
    let names: string[];
    try {
      names = (parallel ? await fsp.readdir(absDir) : timed(() => fs.readdirSync(absDir))).sort();
    } catch (err) {
      skipped.push({ path: relDir || '.', reason: describeFsError(err) });
      return;
    }
    const entries = names
      .map((name) => ({ rel: relDir ? `${relDir}/${name}` : name, abs: path.join(absDir, name) }))
      .filter((e) => !isExcluded(e.rel));
    // In parallel mode every entry's lstat is asked for at once, then all are handled in name order.
    const early = parallel ? entries.map((e) => fsp.lstat(e.abs).catch((err: unknown) => err as Error)) : undefined;
    for (const [i, { rel, abs }] of entries.entries()) {
      const st = early ? await early[i]! : lstatNow(abs);
      if (st instanceof Error) {
        skipped.push({ path: rel, reason: describeFsError(st) });
      } else if (st.isSymbolicLink()) {
        skipped.push({ path: rel, reason: 'symbolic link (not followed)' });
      } else if (st.isDirectory()) {
        files.push({ rel, abs, type: 'dir', size: 0, mode: st.mode & 0o7777, mtimeMs: st.mtimeMs, ino: st.ino });
        await visit(rel);
      } else if (st.isFile()) {
        files.push({ rel, abs, type: 'file', size: st.size, mode: st.mode & 0o7777, mtimeMs: st.mtimeMs, ino: st.ino });
      } else {
        skipped.push({ path: rel, reason: 'not a regular file' });
      }
      await breathe();
    }
  }
  await visit('');
  return { files, skipped };
}

/** SHA-256 of a file's content, hex, read as a stream. */
export async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

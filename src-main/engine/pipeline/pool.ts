// EnginePool: a few engine workers and a job queue. Each worker holds at most two jobs that need its CPU (one running,
// one waiting), so no core idles between jobs and big and small jobs balance out; a restore job whose last writes
// are under way no longer counts (JobReleased). A worker that dies fails every job in flight.
import * as os from 'node:os';
import { Worker } from 'node:worker_threads';
import type { SharedIdTable } from '../vault/id-table.js';
import type { MasterKeys } from '../vault/keys.js';
import { formatFeatures, type VaultConfig } from '../vault/vault.js';
import { isStreamed, type JobError, type JobMessage, type JobReply, type JobValue, type PackEvent, type WorkerEvent, type WorkerInit, type WorkerJob } from './protocol.js';
import { workerScript } from './worker-script.js';
import { reassertYoungGeneration, setEngineFlags } from './young-generation.js';

export class JobFailed extends Error {
  readonly code: string | undefined;
  readonly source: boolean;
  readonly integrity: boolean;
  constructor(e: JobError) {
    super(e.message);
    this.name = 'JobFailed';
    this.code = e.code;
    this.source = e.source;
    this.integrity = e.integrity;
  }
}

/** Workers to start: CLINICVAULT_WORKERS, else one per core, between 1 and 4. */
export function workerCount(): number {
  const env = Number(process.env.CLINICVAULT_WORKERS);
  if (Number.isInteger(env) && env >= 1 && env <= 16) return env;
  return Math.max(1, Math.min(4, os.availableParallelism()));
}

interface Pending {
  job: WorkerJob;
  resolve: (v: JobValue) => void;
  reject: (e: unknown) => void;
  worker?: number;
  /** A streamed restore job (isStreamed): it has a lane of its own in each worker. */
  streamed: boolean;
}

interface Slot {
  worker: Worker;
  running: Map<number, Pending>;
  /** Of running, the jobs that no longer need the worker's CPU (JobReleased). */
  released: Set<number>;
}

/** Jobs of a lane that hold a worker, running or waiting their turn. */
function busy(s: Slot, streamed: boolean): number {
  let n = 0;
  for (const [id, p] of s.running) if (p.streamed === streamed && !s.released.has(id)) n++;
  return n;
}

/** Jobs a worker holds at once: two of its main lane (one running, the next waiting, so that the worker never waits
 * for the main thread), and one streamed restore job, which runs beside them (decision 0036). */
const PER_WORKER = 2;
const STREAMED_PER_WORKER = 1;

export class EnginePool {
  private readonly slots: Slot[] = [];
  private readonly queue: Array<{ id: number; p: Pending }> = [];
  private nextId = 1;
  private dead: Error | undefined;
  /** everyWorker() callers waiting for the queue to drain. */
  private readonly idleWaiters: Array<() => void> = [];

  constructor(
    location: string,
    keys: MasterKeys,
    config: VaultConfig,
    opts: { knownIds?: SharedIdTable; onEvent?: (ev: PackEvent) => void; workers?: number } = {},
  ) {
    const init: WorkerInit = {
      location,
      encryptionKey: keys.encryption,
      idKey: keys.id,
      packSize: config.packSize,
      cdc: config.chunking.files,
      ...formatFeatures(config),
      knownIds: opts.knownIds,
    };
    // The workers' collections rely on buffers being freed within a collection (engine-worker.ts collectNow): the
    // flags are set here too, before any worker's heap is made, whoever runs the engine (the CLI sets them first).
    setEngineFlags();
    const url = workerScript('engine-worker', import.meta.url);
    const n = opts.workers ?? workerCount();
    for (let i = 0; i < n; i++) {
      const worker = new Worker(url, { workerData: init, resourceLimits: { maxYoungGenerationSizeMb: 8 } });
      const slot: Slot = { worker, running: new Map(), released: new Set() };
      worker.on('message', (msg: JobReply | WorkerEvent) => {
        if (msg.type === 'pack') {
          opts.onEvent?.(msg);
          return;
        }
        if (msg.type === 'released') {
          if (slot.running.has(msg.jobId)) slot.released.add(msg.jobId);
          this.pump();
          return;
        }
        const p = slot.running.get(msg.jobId);
        if (!p) return;
        slot.running.delete(msg.jobId);
        slot.released.delete(msg.jobId);
        if (msg.ok) p.resolve(msg.value);
        else p.reject(new JobFailed(msg.error));
        this.pump();
      });
      worker.on('error', (err) => this.fail(err));
      worker.on('exit', (code) => {
        if (code !== 0 || slot.running.size > 0) this.fail(new Error(`an engine worker stopped unexpectedly (exit code ${code})`));
      });
      // Making the worker's heap puts V8's semi-space growth factor back to at least 2 (young-generation.ts).
      worker.once('online', reassertYoungGeneration);
      this.slots.push(slot);
    }
  }

  get size(): number {
    return this.slots.length;
  }

  run<T extends JobValue>(job: WorkerJob): Promise<T> {
    if (this.dead) return Promise.reject(this.dead);
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ id: this.nextId++, p: { job, resolve: resolve as (v: JobValue) => void, reject, streamed: isStreamed(job) } });
      this.pump();
    });
  }

  /** Run the job once on every worker (e.g. flush), after everything queued before it. */
  async everyWorker(job: WorkerJob): Promise<JobValue[]> {
    if (!this.isIdle()) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    if (this.dead) throw this.dead;
    return Promise.all(
      this.slots.map(
        (slot) =>
          new Promise<JobValue>((resolve, reject) => {
            const id = this.nextId++;
            slot.running.set(id, { job, resolve, reject, streamed: false });
            slot.worker.postMessage({ jobId: id, job, streamed: false } satisfies JobMessage);
          }),
      ),
    );
  }

  private isIdle(): boolean {
    return this.queue.length === 0 && this.slots.every((s) => s.running.size === 0);
  }

  private pump(): void {
    if (this.dead || this.isIdle()) for (const w of this.idleWaiters.splice(0)) w();
    // In the order queued, each job to the worker with the fewest of its lane's jobs; a job whose lane is full on
    // every worker waits, and jobs of the other lane behind it go first.
    const full = [false, false];
    for (let q = 0; q < this.queue.length && !(full[0] && full[1]); ) {
      const { id, p } = this.queue[q]!;
      const lane = p.streamed ? 1 : 0;
      const max = p.streamed ? STREAMED_PER_WORKER : PER_WORKER;
      let best: Slot | undefined;
      let least = max;
      if (!full[lane]) {
        for (const s of this.slots) {
          const b = busy(s, p.streamed);
          if (b < least) [best, least] = [s, b];
        }
      }
      if (!best) {
        full[lane] = true;
        q++;
        continue;
      }
      this.queue.splice(q, 1);
      best.running.set(id, p);
      best.worker.postMessage({ jobId: id, job: p.job, streamed: p.streamed } satisfies JobMessage);
    }
  }

  private fail(err: Error): void {
    if (this.dead) return;
    this.dead = err;
    for (const s of this.slots) {
      for (const p of s.running.values()) p.reject(err);
      s.running.clear();
      s.released.clear();
    }
    for (const { p } of this.queue.splice(0)) p.reject(err);
    for (const w of this.idleWaiters.splice(0)) w();
  }

  async close(): Promise<void> {
    this.fail(new Error('the engine pool was closed'));
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}

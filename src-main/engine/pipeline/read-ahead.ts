// Reading packs ahead of the workers that will read them. Workers read packs with synchronous calls, so a read from
// the disk leaves their core idle; packs are mostly not in the page cache when they are read back (the backup
// writes them past it, decision 0019; a drive is plugged in days later; this machine's kernel reclaims idle file
// pages within about a second). The jobs' packs are read first on the main thread's libuv threads, a few jobs ahead
// of those the workers hold, one pack at a time, through one 1 MiB buffer (Storage.readAhead skips a pack that is
// cached already). Used by verify (decision 0025); restore measured the same with it (its time goes to writing).
import type { Storage } from '../vault/storage.js';

export class ReadAhead {
  private readonly queue: Array<{ pack: string; job: number }> = [];
  private readonly seen = new Set<string>();
  private at = 0;
  private jobs = 0;
  private finished = 0;
  private stopped = false;
  private wake: (() => void) | undefined;

  /** `held`: jobs the workers hold at once (two each, pool.ts); `ahead`: jobs beyond those whose packs are read. */
  constructor(
    private readonly storage: Storage,
    private readonly held = 4,
    private readonly ahead = 2,
  ) {}

  /** A job was queued with the workers (in the order they take them), reading these packs. */
  queued(packs: Iterable<string>): void {
    const job = this.jobs++;
    for (const pack of packs) {
      if (this.seen.has(pack)) continue;
      this.seen.add(pack);
      this.queue.push({ pack, job });
    }
    this.poke();
  }

  /** A job ended. */
  done(): void {
    this.finished++;
    this.poke();
  }

  stop(): void {
    this.stopped = true;
    this.poke();
  }

  /** Reads until stopped. */
  async run(): Promise<void> {
    const scratch = Buffer.allocUnsafe(1024 * 1024);
    while (!this.stopped) {
      const next = this.queue[this.at];
      if (next && next.job < this.finished + this.held) {
        this.at++; // a worker holds its job already
      } else if (next && next.job < this.finished + this.held + this.ahead) {
        this.at++;
        await this.storage.readAhead('data', next.pack, scratch);
      } else {
        await new Promise<void>((resolve) => (this.wake = resolve));
      }
    }
  }

  private poke(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}

// Progress bars for terminals (cli-progress), silent otherwise. Reads the engine's progress callbacks.
import cliProgress from 'cli-progress';
import { formatBytes } from '../engine/errors.js';

export interface Bar {
  update(done: number, total: number, files?: { done: number; total: number }): void;
  stop(): void;
}

export function progressBar(enabled: boolean, label: string): Bar {
  if (!enabled || !process.stderr.isTTY) return { update: () => undefined, stop: () => undefined };
  const started = Date.now();
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: `${label} [{bar}] {percentage}% | {files} | {bytes} | {rate} | ETA {eta_formatted}`,
      hideCursor: true,
      etaBuffer: 50,
      fps: 5,
    },
    cliProgress.Presets.shades_classic,
  );
  let startedBar = false;
  return {
    update(done, total, files) {
      const secs = Math.max(0.001, (Date.now() - started) / 1000);
      const payload = {
        files: files ? `${files.done}/${files.total} files` : '',
        bytes: `${formatBytes(done)} of ${formatBytes(total)}`,
        rate: `${formatBytes(done / secs)}/s`,
      };
      if (!startedBar) {
        bar.start(Math.max(total, 1), done, payload);
        startedBar = true;
      } else {
        bar.setTotal(Math.max(total, 1));
        bar.update(done, payload);
      }
    },
    stop() {
      if (startedBar) bar.stop();
    },
  };
}

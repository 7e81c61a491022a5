// Run the real clinicvault command (the compiled CLI) as a child process, with secrets in the environment only.
import { spawn, spawnSync } from 'node:child_process';
import * as path from 'node:path';

export const ROOT = path.resolve(import.meta.dirname, '..', '..');
export const BIN = path.join(ROOT, 'bin', 'clinicvault.js');
export const PASS = 'correct horse battery staple';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function cliEnv(home: string, extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  return { ...process.env, CLINICVAULT_HOME: home, CLINICVAULT_KDF: 'test', CLINICVAULT_PASSPHRASE: PASS, ...extra };
}

/** Run the CLI and wait for it. With `timeoutMs`, a command that has not ended by then fails the test instead of
 * holding up the run (vitest's own timeout cannot interrupt a synchronous wait). */
export function cli(args: string[], env: NodeJS.ProcessEnv, timeoutMs?: number): CliResult {
  const r = spawnSync(process.execPath, [BIN, ...args], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
  if (r.error) throw new Error(`clinicvault ${args[0]} did not end within ${timeoutMs} ms: ${r.error.message}`);
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export function cliAsync(args: string[], env: NodeJS.ProcessEnv): { child: ReturnType<typeof spawn>; done: Promise<CliResult> } {
  const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<CliResult>((resolve) => child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : -1), stdout, stderr })));
  return { child, done };
}

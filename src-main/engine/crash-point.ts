// Crash points for the kill -9 tests. CLINICVAULT_CRASH_AT="<step>:<n>" makes the process kill itself with
// SIGKILL the n-th time it reaches <step>: a real, unclean death at a chosen moment, which random timing alone
// rarely hits in a small test vault. Unset (always, outside the tests), it does nothing.
const reached = new Map<string, number>();

export function crashPoint(step: string): void {
  const spec = process.env.CLINICVAULT_CRASH_AT;
  if (!spec) return;
  const at = spec.lastIndexOf(':');
  const name = at < 0 ? spec : spec.slice(0, at);
  if (name !== step) return;
  const n = (reached.get(step) ?? 0) + 1;
  reached.set(step, n);
  if (n === (at < 0 ? 1 : Number(spec.slice(at + 1)))) process.kill(process.pid, 'SIGKILL');
}

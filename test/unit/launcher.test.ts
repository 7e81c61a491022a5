// bin/clinicvault, the Unix launcher: it must hand every argument and the exit status through unchanged, find the
// JavaScript beside its real location (npm links it), and add glibc's huge-page tunable without dropping the
// caller's own tunables or overriding a huge-page choice the caller made (decision 0030), and size libuv's thread
// pool unless the caller did (decision 0031).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/cli.js';

const LAUNCHER = path.join(ROOT, 'bin', 'clinicvault');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cv-launcher-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A stand-in for node on PATH: prints what it was given and exits with FAKE_EXIT. */
const fakeBin = path.join(dir, 'fakebin');
fs.mkdirSync(fakeBin);
fs.writeFileSync(
  path.join(fakeBin, 'node'),
  '#!/bin/sh\nprintf "tunables=%s\\n" "${GLIBC_TUNABLES-(unset)}"\nprintf "threads=%s\\n" "${UV_THREADPOOL_SIZE-(unset)}"\nfor a in "$@"; do printf "arg=%s\\n" "$a"; done\nexit "${FAKE_EXIT:-0}"\n',
  { mode: 0o755 },
);

function launch(launcher: string, args: string[], env: Record<string, string>): { code: number | null; lines: string[] } {
  const r = spawnSync(launcher, args, { env: { PATH: `${fakeBin}:/usr/bin:/bin`, ...env }, encoding: 'utf8' });
  return { code: r.status, lines: r.stdout.split('\n').filter(Boolean) };
}

describe.skipIf(process.platform === 'win32')('the Unix launcher', () => {
  it('runs bin/clinicvault.js with every argument as given, and exits with its status', () => {
    const r = launch(LAUNCHER, ['restore', '--target', 'a folder with spaces', '--include', "it's"], { FAKE_EXIT: '7' });
    expect(r.code).toBe(7);
    expect(r.lines.slice(2)).toEqual([`arg=${path.join(ROOT, 'bin', 'clinicvault.js')}`, 'arg=restore', 'arg=--target', 'arg=a folder with spaces', 'arg=--include', "arg=it's"]);
  });

  it('finds the JavaScript beside its real location when started through a link', () => {
    const link = path.join(dir, 'clinicvault-link');
    fs.symlinkSync(LAUNCHER, link);
    const r = launch(link, ['--version'], {});
    expect(r.code).toBe(0);
    expect(r.lines[2]).toBe(`arg=${path.join(ROOT, 'bin', 'clinicvault.js')}`);
  });

  it('adds the huge-page tunable, keeps the caller\'s other tunables, and leaves a huge-page choice alone', () => {
    expect(launch(LAUNCHER, [], {}).lines[0]).toBe('tunables=glibc.malloc.hugetlb=1');
    expect(launch(LAUNCHER, [], { GLIBC_TUNABLES: 'glibc.malloc.check=0' }).lines[0]).toBe('tunables=glibc.malloc.check=0:glibc.malloc.hugetlb=1');
    expect(launch(LAUNCHER, [], { GLIBC_TUNABLES: 'glibc.malloc.hugetlb=0' }).lines[0]).toBe('tunables=glibc.malloc.hugetlb=0');
    expect(launch(LAUNCHER, [], { GLIBC_TUNABLES: 'glibc.malloc.check=0:glibc.malloc.hugetlb=2' }).lines[0]).toBe('tunables=glibc.malloc.check=0:glibc.malloc.hugetlb=2');
  });

  it('gives libuv a thread pool of 8 unless the caller chose a size', () => {
    expect(launch(LAUNCHER, [], {}).lines[1]).toBe('threads=8');
    expect(launch(LAUNCHER, [], { UV_THREADPOOL_SIZE: '3' }).lines[1]).toBe('threads=3');
  });

  it('says what is missing when Node is not on the PATH', () => {
    const r = spawnSync(LAUNCHER, ['--version'], { env: { PATH: path.join(dir, 'empty') }, encoding: 'utf8' });
    expect(r.status).toBe(127);
    expect(r.stderr).toContain('needs Node.js 20 or later on the PATH');
  });

  it('starts the real command', () => {
    const r = spawnSync(LAUNCHER, ['--version'], { env: { ...process.env, PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? ''}` }, encoding: 'utf8' });
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(pkg.version);
  });
});

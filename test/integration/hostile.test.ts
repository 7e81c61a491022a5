// A vault written by an attacker (who has the key, or a buggy writer) cannot make restore write outside the target.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Vault } from '../../src-main/engine/vault/vault.js';
import { backup } from '../../src-main/engine/backup.js';
import { restore } from '../../src-main/engine/restore.js';
import { writeSnapshot, type Snapshot, type TreeEntry } from '../../src-main/engine/vault/snapshot.js';
import { tempDir, writeFile } from '../helpers/clinic.js';
import { PASS } from '../helpers/cli.js';

async function vaultWithFile(): Promise<{ work: string; vault: Vault; snap: Snapshot }> {
  const work = tempDir();
  writeFile(path.join(work, 'media', 'a.txt'), 'harmless');
  const { vault } = await Vault.init(path.join(work, 'vault'), PASS);
  const r = await backup(vault, { folders: [path.join(work, 'media')], appVersion: 'test' });
  return { work, vault, snap: r.snapshot };
}

function withEntry(snap: Snapshot, entry: Partial<TreeEntry>, label?: string): Snapshot {
  const src = snap.sources[0]!;
  const base = src.entries.find((e) => e.type === 'file')!;
  return { ...snap, sources: [{ ...src, label: label ?? src.label, entries: [...src.entries, { ...base, ...entry } as TreeEntry] }] };
}

describe('hostile snapshots', () => {
  const cases: Array<[string, Partial<TreeEntry>, string?]> = [
    ['dot-dot escape', { path: '../../escaped.txt' }],
    ['dot-dot in the middle', { path: 'a/../../escaped.txt' }],
    ['absolute path', { path: '/tmp/escaped.txt' }],
    ['windows drive path', { path: 'C:/escaped.txt' }],
    ['backslash path', { path: '..\\escaped.txt' }],
    ['symlink entry', { path: 'link', type: 'symlink' as TreeEntry['type'] }],
    ['label escape', {}, '..'],
    ['label with slash', {}, '../outside'],
  ];
  for (const [name, entry, label] of cases) {
    it(`refuses ${name} and writes nothing`, async () => {
      const { work, vault, snap } = await vaultWithFile();
      const bad = withEntry(snap, entry, label);
      const id = await writeSnapshot(vault.storage, vault.keys, bad);
      const target = path.join(work, 'target', 'inner');
      await expect(restore(vault, await vault.readSnapshot(id), { target })).rejects.toThrow(/unsafe|outside/);
      expect(fs.existsSync(path.join(work, 'target', 'escaped.txt'))).toBe(false);
      expect(fs.existsSync(path.join(work, 'escaped.txt'))).toBe(false);
      expect(fs.existsSync(path.join(target, 'media'))).toBe(false);
    });
  }

  it('does not follow a symlink planted in the target folder', async () => {
    const { work, vault, snap } = await vaultWithFile();
    const outside = path.join(work, 'outside');
    fs.mkdirSync(outside);
    const target = path.join(work, 'target');
    fs.mkdirSync(target);
    fs.symlinkSync(outside, path.join(target, 'media'));
    await expect(restore(vault, snap, { target, overwrite: true })).rejects.toThrow(/symbolic link/);
    expect(fs.readdirSync(outside)).toEqual([]);
  });

  it('stops when a file stands where a folder must be made, and leaves that file alone', async () => {
    const { work, vault, snap } = await vaultWithFile();
    const target = path.join(work, 'target');
    fs.mkdirSync(target);
    fs.writeFileSync(path.join(target, 'media'), 'the clinic notes, not a folder');
    await expect(restore(vault, snap, { target, overwrite: true })).rejects.toThrow(/exists and is not a folder/);
    expect(fs.readFileSync(path.join(target, 'media'), 'utf8')).toBe('the clinic notes, not a folder');
    expect(fs.readdirSync(target)).toEqual(['media']);
  });
});

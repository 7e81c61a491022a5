// A backup's snapshot is compressed in two parts (draftSnapshot): everything but its totals while the backup finishes,
// then the totals. The file must read back as the whole snapshot, with any raw deflate reader (FORMAT.md).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { inflateRawSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { open } from '../../src-main/engine/vault/crypto.js';
import { generateMasterKeys } from '../../src-main/engine/vault/keys.js';
import { draftSnapshot, readSnapshot, SNAPSHOT_AAD, writeSnapshot, type SnapshotDraft } from '../../src-main/engine/vault/snapshot.js';
import { LocalStorage } from '../../src-main/engine/vault/storage.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cv-draft-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('draftSnapshot', () => {
  it('writes a snapshot that reads back whole, as one raw deflate stream of its JSON', async () => {
    fs.mkdirSync(path.join(dir, 'snapshots'));
    const storage = new LocalStorage(dir);
    const keys = generateMasterKeys();
    // A chunk list of random ids, like a database's, and a folder of many similar entries.
    const content = Buffer.from(Array.from({ length: 60_000 }, (_, i) => (i * 2654435761) % 251)).toString('base64');
    const draft: SnapshotDraft = {
      version: 1,
      time: '2026-12-03T04:00:00.000Z',
      host: 'reception-pc',
      appVersion: '0.1.0',
      tags: ['nightly'],
      parent: null,
      sources: [
        { kind: 'sqlite', label: 'clinic.sqlite', originalPath: '/data/clinic.sqlite', pageSize: 4096, size: 4096, tables: { patients: 3 }, integrityCheck: 'ok', entries: [{ path: 'clinic.sqlite', type: 'file', size: 4096, mode: 0o600, mtimeMs: 1, content }] },
        {
          kind: 'folder', label: 'media', originalPath: '/data/media', fileCount: 500, bytes: 500, excludes: [], skipped: [],
          entries: Array.from({ length: 500 }, (_, i) => ({ path: `photos/p${i}.jpg`, type: 'file' as const, size: 1, mode: 0o644, mtimeMs: i, content: '' })),
        },
      ],
      audit: [{ seq: 1, time: '2026-12-03T04:00:00.000Z', actor: 'owner', action: 'backup.start', vaultId: null, details: { sources: 2 }, prevHash: '0', hash: '1' }],
    };
    const totals = { bytesRead: 4097, bytesAdded: 100, chunksAdded: 2, filesNew: 500, filesChanged: 0, filesUnchanged: 0, durationMs: 12 };
    const { id, snapshot } = await draftSnapshot(draft).write(storage, keys, totals);
    expect(snapshot).toEqual({ ...draft, totals });
    expect(await readSnapshot(storage, keys, id)).toEqual(snapshot);
    const plain = inflateRawSync(open(keys.encryption, fs.readFileSync(path.join(dir, 'snapshots', id)), SNAPSHOT_AAD)).toString();
    expect(plain).toBe(JSON.stringify(snapshot));
    // The long chunk list is stored as it is (deflate would shrink it by ~25%), the 500 entries compressed.
    const size = fs.statSync(path.join(dir, 'snapshots', id)).size;
    expect(size).toBeGreaterThan(content.length);
    expect(size).toBeLessThan(content.length + 10_000);

    // A rewritten snapshot (erase, tag) is written the same way.
    const again = await writeSnapshot(storage, keys, { ...snapshot, tags: ['kept'] });
    expect(await readSnapshot(storage, keys, again)).toEqual({ ...snapshot, tags: ['kept'] });
    expect(fs.statSync(path.join(dir, 'snapshots', again)).size).toBeLessThan(content.length + 10_000);
  });
});

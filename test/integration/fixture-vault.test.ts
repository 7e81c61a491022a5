// Every committed fixture vault (one per format version) still opens, verifies and restores with today's code.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cli, cliEnv, ROOT } from '../helpers/cli.js';
import { hashTree, tempDir } from '../helpers/clinic.js';

const fixtures = path.join(ROOT, 'test', 'fixtures');
const versions = fs.readdirSync(fixtures).filter((d) => /^vault-v\d+$/.test(d));

describe('old-format fixture vaults', () => {
  it('there is at least one fixture', () => expect(versions.length).toBeGreaterThan(0));
  for (const v of versions) {
    it(`${v} opens with passphrase and recovery key, verifies, and restores exactly`, () => {
      const dir = path.join(fixtures, v);
      const expected = JSON.parse(fs.readFileSync(path.join(dir, 'expected.json'), 'utf8')) as {
        snapshots: number;
        latest: { media: Record<string, string>; tables: Record<string, number> };
      };
      // Work on a copy: verify and restore must not need to write, but the fixture stays pristine regardless.
      const work = tempDir();
      const vault = path.join(work, 'vault');
      fs.cpSync(path.join(dir, 'vault'), vault, { recursive: true });
      const env = cliEnv(path.join(work, 'home'), { CLINICVAULT_PASSPHRASE: '' });
      const pass = ['--passphrase-file', path.join(dir, 'passphrase.txt')];
      const list = cli(['snapshots', '--vault', vault, '--json', ...pass], env);
      expect(list.code, list.stderr).toBe(0);
      expect((JSON.parse(list.stdout) as unknown[]).length).toBe(expected.snapshots);
      expect(cli(['verify', '--vault', vault, '--read-data', '--recovery-key-file', path.join(dir, 'recovery-key.txt')], env).code).toBe(0);
      const target = path.join(work, 'restore');
      const r = cli(['restore', '--vault', vault, '--target', target, '--json', ...pass], env);
      expect(r.code, r.stderr).toBe(0);
      const res = JSON.parse(r.stdout) as { databases: Array<{ ok: boolean; actual: Record<string, number> }> };
      expect(res.databases[0]!.ok).toBe(true);
      expect(res.databases[0]!.actual).toEqual(expected.latest.tables);
      const tree = hashTree(target);
      delete tree['clinic.sqlite'];
      expect(tree).toEqual(expected.latest.media);
    });
  }
});

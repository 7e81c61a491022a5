// verify --read-data-subset: successive runs read successive shares, a cycle reads every pack exactly once, and a
// damaged pack is found by the run whose share holds it.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, cliEnv } from '../helpers/cli.js';
import { tempDir } from '../helpers/clinic.js';

interface Report {
  ok: boolean;
  packs: number;
  subset: { group: number; of: number; packsRead: number };
  problems: Array<{ file?: string }>;
}

describe('verify --read-data-subset', () => {
  it('reads a rotating share; over one cycle every pack once; damage is found in its share', () => {
    const work = tempDir('cv-subset-');
    const media = path.join(work, 'media');
    fs.mkdirSync(media);
    for (let i = 0; i < 12; i++) fs.writeFileSync(path.join(media, `scan-${i}.bin`), randomBytes(7 * 1024 * 1024));
    const vault = path.join(work, 'vault');
    const env = cliEnv(path.join(work, 'home'));
    expect(cli(['init', '--vault', vault], env).code).toBe(0);
    expect(cli(['backup', '--vault', vault, '--folder', media], env).code).toBe(0);

    const run = (): Report => JSON.parse(cli(['verify', '--vault', vault, '--read-data-subset', '25%', '--json'], env).stdout);
    const cycle = [run(), run(), run(), run()];
    expect(cycle.map((r) => r.subset.group)).toEqual([0, 1, 2, 3]);
    expect(cycle.every((r) => r.subset.of === 4 && r.ok)).toBe(true);
    const total = cycle[0]!.packs;
    expect(total).toBeGreaterThanOrEqual(4);
    expect(cycle.reduce((a, r) => a + r.subset.packsRead, 0)).toBe(total);
    expect(run().subset.group).toBe(0); // the next cycle starts again

    // Damage one pack: exactly one run of the next cycle (groups 1, 2, 3, 0) reports it, naming that pack.
    const dataDir = path.join(vault, 'data');
    const sub = fs.readdirSync(dataDir).find((d) => fs.readdirSync(path.join(dataDir, d)).length > 0)!;
    const pack = fs.readdirSync(path.join(dataDir, sub))[0]!;
    const file = path.join(dataDir, sub, pack);
    const bytes = fs.readFileSync(file);
    bytes[1000] = bytes[1000]! ^ 0xff;
    fs.writeFileSync(file, bytes);
    const next = [run(), run(), run(), run()];
    const found = next.filter((r) => !r.ok);
    expect(found).toHaveLength(1);
    expect(found[0]!.problems.some((p) => p.file === pack)).toBe(true);
    expect(found[0]!.subset.group).toBe(Number.parseInt(pack.slice(0, 8), 16) % 4);

    const bad = cli(['verify', '--vault', vault, '--read-data-subset', '0%'], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/percentage between 0 and 100/);
  });
});

// A throwaway PostgreSQL cluster for tests: initdb and pg_ctl from the Debian packages in a temp folder, on a
// free port, with password (SCRAM) authentication, torn down afterwards. As root (CI) the server runs as the
// "postgres" system user, because PostgreSQL refuses to run as root.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import pg from 'pg';

export const PG_PASSWORD = 'test-pg-pass-7c1d';

function findBin(): string | undefined {
  const dirs: string[] = [];
  try {
    for (const v of fs.readdirSync('/usr/lib/postgresql').sort((a, b) => Number(b) - Number(a))) dirs.push(`/usr/lib/postgresql/${v}/bin`);
  } catch {
    /* not Debian */
  }
  for (const d of (process.env.PATH ?? '').split(path.delimiter)) dirs.push(d);
  return dirs.find((d) => ['initdb', 'pg_ctl', 'postgres', 'pg_dump'].every((n) => fs.existsSync(path.join(d, n))));
}

/** Why PostgreSQL tests cannot run here, or undefined when they can. Under CI=true the caller fails instead. */
export function pgUnavailable(): string | undefined {
  if (process.platform === 'win32') return 'the test cluster harness is for Linux and macOS';
  if (!findBin()) return 'no PostgreSQL server binaries (initdb, pg_ctl) found; install the "postgresql" package';
  if (process.getuid?.() === 0 && spawnSync('id', ['postgres']).status !== 0) return 'running as root and there is no "postgres" user to run the server';
  return undefined;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

export class TestCluster {
  private constructor(
    readonly bin: string,
    readonly dir: string,
    readonly port: number,
    private readonly asUser: string[],
  ) {}

  static async start(): Promise<TestCluster> {
    const bin = findBin();
    if (!bin) throw new Error(pgUnavailable());
    const root = process.getuid?.() === 0;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cv-pgcluster-'));
    fs.chmodSync(dir, 0o755);
    const asUser = root ? ['runuser', '-u', 'postgres', '--'] : [];
    if (root) execFileSync('chown', ['-R', 'postgres:postgres', dir]);
    const pw = path.join(dir, 'pw');
    fs.writeFileSync(pw, PG_PASSWORD + '\n', { mode: 0o600 });
    if (root) execFileSync('chown', ['postgres', pw]);
    const run = (cmd: string, args: string[]): void => {
      const [exe, ...rest] = [...asUser, path.join(bin, cmd), ...args];
      // No pipes: the server pg_ctl starts would inherit them and keep spawnSync waiting forever.
      const r = spawnSync(exe!, rest, { stdio: 'ignore', timeout: 60_000 });
      if (r.status !== 0) throw new Error(`${cmd} failed (status ${r.status}); see ${dir}/log`);
    };
    run('initdb', ['-D', path.join(dir, 'data'), '-U', 'postgres', '--auth=scram-sha-256', `--pwfile=${pw}`, '-E', 'UTF8', '--locale=C.UTF-8']);
    const port = await freePort();
    run('pg_ctl', ['-D', path.join(dir, 'data'), '-l', path.join(dir, 'log'), '-w', '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`, 'start']);
    return new TestCluster(bin, dir, port, asUser);
  }

  url(db: string, user = 'postgres'): string {
    return `postgres://${user}@127.0.0.1:${this.port}/${db}`;
  }

  async client(db = 'postgres'): Promise<pg.Client> {
    const c = new pg.Client({ host: '127.0.0.1', port: this.port, user: 'postgres', password: PG_PASSWORD, database: db });
    await c.connect();
    return c;
  }

  async sql(db: string, text: string): Promise<pg.QueryResult> {
    const c = await this.client(db);
    try {
      return await c.query(text);
    } finally {
      await c.end();
    }
  }

  /** Run a client tool of the same version against the cluster (password via the environment). */
  tool(name: string, args: string[]): string {
    return execFileSync(path.join(this.bin, name), args, {
      encoding: 'utf8',
      env: { ...process.env, PGHOST: '127.0.0.1', PGPORT: String(this.port), PGUSER: 'postgres', PGPASSWORD: PG_PASSWORD },
      maxBuffer: 256 * 1024 * 1024,
    });
  }

  stop(): void {
    const [exe, ...rest] = [...this.asUser, path.join(this.bin, 'pg_ctl'), '-D', path.join(this.dir, 'data'), '-m', 'immediate', 'stop'];
    spawnSync(exe!, rest);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

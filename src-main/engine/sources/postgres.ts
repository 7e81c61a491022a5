// PostgreSQL source: finds the client tools, opens a repeatable-read transaction, exports its snapshot so pg_dump
// and the row counts see the same instant, and describes the database (version, size, tables, migrations).
// Passwords come only from PGPASSWORD, a .pgpass file or the app's secret store, never from a URL or argv.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import type pg from 'pg';
import { ClinicVaultError, UsageError } from '../errors.js';
import { quoteIdent } from './sqlite.js';

const execFileP = promisify(execFile);

export interface PgTarget {
  host: string;
  port: number;
  database: string;
  user: string;
  sslmode?: string;
  /** The URL as the user gave it (it never holds a password). */
  url: string;
}

export function parsePostgresUrl(url: string, what = '--postgres'): PgTarget {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UsageError(`${what} must be a URL like postgres://user@localhost:5432/clinic (got "${url}").`);
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') {
    throw new UsageError(`${what} must start with postgres:// (got "${u.protocol}").`);
  }
  if (u.password) {
    throw new UsageError(
      `Do not put the database password in ${what}: command lines are visible to other programs and end up in logs. ` +
        'Set PGPASSWORD in the environment or add the password to a .pgpass file, and give the URL without it.',
    );
  }
  const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (!database) throw new UsageError(`${what} must name the database, e.g. postgres://user@localhost:5432/clinic.`);
  const port = u.port ? Number(u.port) : 5432;
  return {
    host: decodeURIComponent(u.hostname.replace(/^\[|\]$/g, '')) || 'localhost',
    port,
    database,
    user: decodeURIComponent(u.username) || process.env.PGUSER || os.userInfo().username,
    sslmode: u.searchParams.get('sslmode') ?? undefined,
    url: `${u.protocol}//${u.username ? u.username + '@' : ''}${u.host}/${u.pathname.replace(/^\//, '')}`,
  };
}

/** Environment for pg_dump/pg_restore/psql: the connection in PG* variables, never on the command line. */
export function pgEnv(t: PgTarget, database = t.database): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    SYSTEMROOT: process.env.SYSTEMROOT,
    HOME: process.env.HOME,
    APPDATA: process.env.APPDATA,
    LANG: 'C',
    PGHOST: t.host,
    PGPORT: String(t.port),
    PGDATABASE: database,
    PGUSER: t.user,
    PGAPPNAME: 'clinicvault',
    PGCONNECT_TIMEOUT: '10',
  };
  for (const k of ['PGPASSWORD', 'PGPASSFILE', 'PGSSLROOTCERT', 'PGSSLMODE']) if (process.env[k]) env[k] = process.env[k];
  if (t.sslmode) env.PGSSLMODE = t.sslmode;
  return env;
}

export async function connect(t: PgTarget, database = t.database): Promise<pg.Client> {
  // Loaded when first needed: most clinics back up SQLite, and every command would pay ~0.1 s to load it.
  const { default: pgLib } = await import('pg');
  const client = new pgLib.Client({
    host: t.host,
    port: t.port,
    database,
    user: t.user,
    password: process.env.PGPASSWORD,
    application_name: 'clinicvault',
    connectionTimeoutMillis: 10_000,
    ssl: t.sslmode && t.sslmode !== 'disable' ? { rejectUnauthorized: t.sslmode === 'verify-full' || t.sslmode === 'verify-ca' } : undefined,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
    throw describePgError(err, t, database);
  }
  return client;
}

/** A PostgreSQL or network error as a sentence the clinic owner can act on. */
export function describePgError(err: unknown, t: PgTarget, database = t.database): ClinicVaultError {
  const e = err as { code?: string; message?: string };
  const where = `the PostgreSQL server at ${t.host}:${t.port}`;
  switch (e.code) {
    case 'ECONNREFUSED':
    case 'ENOTFOUND':
    case 'EHOSTUNREACH':
    case 'ETIMEDOUT':
    case 'EAI_AGAIN':
      return new ClinicVaultError(`Cannot reach ${where} (${e.code}). Is the database server running, and are the host and port right?`);
    case '28P01':
      return new UsageError(`${where} refused the password for user "${t.user}". Check PGPASSWORD or the .pgpass file.`);
    case '28000':
      return new UsageError(`${where} does not let user "${t.user}" connect to "${database}" (${e.message}). Check the user name and pg_hba.conf.`);
    case '3D000':
      return new UsageError(`${where} has no database named "${database}". Check the name in the URL.`);
    case '42501':
      return new ClinicVaultError(`User "${t.user}" may not read everything in "${database}" (${e.message}). Use the database owner or a role with read access to every table.`);
  }
  if (/password must be a string|no password supplied|password authentication/i.test(e.message ?? '')) {
    return new UsageError(`${where} asks for a password for user "${t.user}" and none was given. Set PGPASSWORD or add it to a .pgpass file.`);
  }
  if (e.message === 'Connection terminated unexpectedly' || /terminating connection/.test(e.message ?? '')) {
    return new ClinicVaultError(`${where} closed the connection (${e.message}). Was the server stopped or restarted?`);
  }
  return new ClinicVaultError(`PostgreSQL error from ${where}: ${e.message ?? String(err)}`);
}

// ---------------------------------------------------------------- client tools

export interface PgTools {
  dir: string;
  major: number;
  version: string;
  pgDump: string;
  pgDumpall: string;
  pgRestore: string;
  psql: string;
}

function exe(name: string): string {
  return process.platform === 'win32' ? `${name}.exe` : name;
}

function globDirs(parent: string, sub: string): string[] {
  try {
    return readdirSync(parent).map((d) => path.join(parent, d, sub));
  } catch {
    return [];
  }
}

/** Folders that may hold pg_dump: CLINICVAULT_PG_BIN alone if set, else PATH, then the usual install places. */
export function candidateToolDirs(): string[] {
  if (process.env.CLINICVAULT_PG_BIN) return [process.env.CLINICVAULT_PG_BIN];
  const dirs = (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
  if (process.platform === 'win32') {
    for (const pf of [process.env.ProgramFiles, process.env['ProgramFiles(x86)'], 'C:\\Program Files']) {
      if (pf) dirs.push(...globDirs(path.join(pf, 'PostgreSQL'), 'bin'));
    }
  } else if (process.platform === 'darwin') {
    dirs.push(...globDirs('/Applications/Postgres.app/Contents/Versions', 'bin'));
    for (const brew of ['/opt/homebrew/opt', '/usr/local/opt']) {
      try {
        for (const d of readdirSync(brew)) if (/^postgresql(@\d+)?$/.test(d) || d === 'libpq') dirs.push(path.join(brew, d, 'bin'));
      } catch {
        /* no Homebrew here */
      }
    }
  } else {
    dirs.push(...globDirs('/usr/lib/postgresql', 'bin'));
    dirs.push(...globDirs('/usr', '').filter((d) => /pgsql-\d+/.test(d)).map((d) => path.join(d, 'bin')));
  }
  return [...new Set(dirs)];
}

/** Client tools whose major version is at least minMajor (the newest found), or a plain-words error. */
export async function findPgTools(minMajor: number, serverVersion: string): Promise<PgTools> {
  const found: PgTools[] = [];
  for (const dir of candidateToolDirs()) {
    const names = { pgDump: 'pg_dump', pgDumpall: 'pg_dumpall', pgRestore: 'pg_restore', psql: 'psql' };
    const paths = Object.fromEntries(Object.entries(names).map(([k, n]) => [k, path.join(dir, exe(n))])) as Record<keyof typeof names, string>;
    if (!Object.values(paths).every((p) => existsSync(p))) continue;
    try {
      const { stdout } = await execFileP(paths.pgDump, ['--version'], { timeout: 10_000 });
      const m = /(\d+)(?:\.(\d+))?/.exec(stdout.replace(/^[^)]*\)/, ''));
      if (!m) continue;
      found.push({ dir, major: Number(m[1]), version: stdout.trim(), ...paths });
    } catch {
      continue;
    }
  }
  const fitting = found.filter((t) => t.major >= minMajor).sort((a, b) => b.major - a.major);
  if (fitting[0]) return fitting[0];
  if (found.length === 0) {
    throw new ClinicVaultError(
      `The PostgreSQL client tools (pg_dump, pg_restore, psql) were not found on this computer. Install the PostgreSQL ${minMajor} client ` +
        '(on Windows the PostgreSQL installer, on a Mac Postgres.app or "brew install postgresql", on Linux the postgresql-client package), then try again.',
    );
  }
  const newest = found.sort((a, b) => b.major - a.major)[0]!;
  throw new ClinicVaultError(
    `The database server runs PostgreSQL ${serverVersion}, but the newest PostgreSQL tools on this computer are version ${newest.major} ` +
      `(${newest.dir}). Older tools cannot back up a newer server. Install the PostgreSQL ${minMajor} client tools (or newer), then try again.`,
  );
}

// ---------------------------------------------------------------- describing the database

export interface PgTableCount {
  name: string;
  rows: number;
}

export interface PgDescription {
  serverVersion: string;
  serverVersionNum: number;
  major: number;
  databaseSize: number;
  owner: string;
  encoding: string;
  collate: string;
  ctype: string;
  tables: Record<string, number>;
  migrations: { table: string; applied: string[] } | null;
}

export { quoteIdent };

export async function serverMajor(client: pg.Client): Promise<{ num: number; version: string }> {
  const r = await client.query<{ server_version_num: string; server_version: string }>(
    "SELECT current_setting('server_version_num') AS server_version_num, current_setting('server_version') AS server_version",
  );
  return { num: Number(r.rows[0]!.server_version_num), version: r.rows[0]!.server_version.split(' ')[0]! };
}

/** Exact row count of every ordinary and partitioned table outside the system schemas, keyed "schema.table". */
export async function countRows(client: pg.Client, only?: string[]): Promise<Record<string, number>> {
  const r = await client.query<{ nspname: string; relname: string }>(
    `SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
        AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
      ORDER BY 1, 2`,
  );
  const out: Record<string, number> = {};
  for (const { nspname, relname } of r.rows) {
    const key = `${nspname}.${relname}`;
    if (only && !only.includes(key)) continue;
    const c = await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${quoteIdent(nspname)}.${quoteIdent(relname)}`);
    out[key] = Number(c.rows[0]!.n);
  }
  return out;
}

async function migrations(client: pg.Client, tables: Record<string, number>): Promise<PgDescription['migrations']> {
  const has = (t: string): string | undefined => Object.keys(tables).find((k) => k.endsWith(`.${t}`));
  const dj = has('django_migrations');
  if (dj) {
    const r = await client.query<{ m: string }>(`SELECT app || '.' || name AS m FROM ${dj.split('.').map(quoteIdent).join('.')} ORDER BY id`);
    return { table: dj, applied: r.rows.map((x) => x.m) };
  }
  const al = has('alembic_version');
  if (al) {
    const r = await client.query<{ m: string }>(`SELECT version_num AS m FROM ${al.split('.').map(quoteIdent).join('.')} ORDER BY 1`);
    return { table: al, applied: r.rows.map((x) => x.m) };
  }
  const rails = has('schema_migrations');
  if (rails) {
    const r = await client.query<{ m: string }>(`SELECT version::text AS m FROM ${rails.split('.').map(quoteIdent).join('.')} ORDER BY 1`);
    return { table: rails, applied: r.rows.map((x) => x.m) };
  }
  return null;
}

/** Inside the caller's transaction (so in the exported snapshot): what the snapshot records about the database. */
export async function describeDatabase(client: pg.Client): Promise<PgDescription> {
  const v = await serverMajor(client);
  const d = await client.query<{ size: string; owner: string; encoding: string; collate: string; ctype: string }>(
    `SELECT pg_database_size(current_database()) AS size, pg_get_userbyid(datdba) AS owner,
            pg_encoding_to_char(encoding) AS encoding, datcollate AS collate, datctype AS ctype
       FROM pg_database WHERE datname = current_database()`,
  );
  const row = d.rows[0]!;
  const tables = await countRows(client);
  return {
    serverVersion: v.version,
    serverVersionNum: v.num,
    major: Math.floor(v.num / 10000),
    databaseSize: Number(row.size),
    owner: row.owner,
    encoding: row.encoding,
    collate: row.collate,
    ctype: row.ctype,
    tables,
    migrations: await migrations(client, tables),
  };
}

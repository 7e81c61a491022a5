// PostgreSQL restore, safe by construction: the dump goes into a NEW database, which is checked (pg_restore's exit
// status, every table's row count against the snapshot) before anything else happens. Only then, and only when
// asked, are names swapped: the live database becomes <name>_before_restore_<time> and is kept until the owner
// removes it. A swap is refused while other applications are connected to the live database.
import { execFile } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import type pg from 'pg';
import { ClinicVaultError, RefusedError, UsageError } from './errors.js';
import { restore } from './restore.js';
import { connect, countRows, describePgError, findPgTools, parsePostgresUrl, pgEnv, quoteIdent, serverMajor, type PgTarget } from './sources/postgres.js';
import type { PostgresSource, Snapshot } from './vault/snapshot.js';
import type { Vault } from './vault/vault.js';

const execFileP = promisify(execFile);

export interface PgRestoreOptions {
  /** Server (and, for --replace, the live database) to restore to; no password in it. */
  target: string;
  /** Name of the new database; default <live name>_restored_<time>. */
  asNewDatabase?: string;
  /** After the new database is proved good, swap it in place of the live one (which is kept, renamed). */
  replace?: boolean;
  /** Restore only these tables ("table" or "schema.table") into the new (scratch) database. */
  tables?: string[];
  /** Which PostgreSQL source of the snapshot (its label = database name); needed when it holds several. */
  source?: string;
  log?: (msg: string) => void;
  tmpDir?: string;
  now?: () => Date;
}

export interface PgRestoreResult {
  database: string;
  replaced: { live: string; keptAs: string } | null;
  tables: Record<string, { expected: number; actual: number }>;
  ok: boolean;
  warnings: string[];
  durationMs: number;
}

function stamp(d: Date): string {
  return d.toISOString().replace(/[-:]/g, '').replace('T', '_').slice(0, 15);
}

function pickSource(snapshot: Snapshot, wanted?: string): PostgresSource {
  const pgs = snapshot.sources.filter((s): s is PostgresSource => s.kind === 'postgres');
  if (pgs.length === 0) throw new UsageError('This backup holds no PostgreSQL database. Choose a snapshot made with --postgres.');
  if (wanted) {
    const s = pgs.find((x) => x.label === wanted);
    if (!s) throw new UsageError(`This backup holds no PostgreSQL database named "${wanted}" (it has: ${pgs.map((x) => x.label).join(', ')}).`);
    return s;
  }
  if (pgs.length > 1) throw new UsageError(`This backup holds several PostgreSQL databases (${pgs.map((x) => x.label).join(', ')}); say which with --source NAME.`);
  return pgs[0]!;
}

function tableKey(t: string): string {
  return t.includes('.') ? t : `public.${t}`;
}

async function exists(client: pg.Client, db: string): Promise<boolean> {
  return (await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [db])).rowCount! > 0;
}

async function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, what: string): Promise<string> {
  try {
    const { stdout } = await execFileP(cmd, args, { env, maxBuffer: 64 * 1024 * 1024, windowsHide: true });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; code?: number | string; message: string };
    const said = (e.stderr ?? '').trim().split('\n').slice(-6).join(' | ');
    throw new ClinicVaultError(`${what} failed (${typeof e.code === 'number' ? `exit status ${e.code}` : e.code ?? e.message})${said ? `: ${said}` : ''}`);
  }
}

export async function restorePostgres(vault: Vault, snapshot: Snapshot, opts: PgRestoreOptions): Promise<PgRestoreResult> {
  const t0 = performance.now();
  const now = opts.now ?? (() => new Date());
  const log = opts.log ?? (() => undefined);
  const src = pickSource(snapshot, opts.source);
  const target: PgTarget = parsePostgresUrl(opts.target, '--postgres-target');
  const live = target.database;
  const newDb = opts.asNewDatabase ?? `${live}_restored_${stamp(now())}`;
  if (!/^[\p{L}\p{N}_$-]{1,63}$/u.test(newDb)) throw new UsageError(`"${newDb}" is not a usable database name (letters, digits, _ and -, at most 63 characters).`);
  if (opts.replace && opts.tables?.length) throw new UsageError('A restore of chosen tables goes into a scratch database; it cannot replace the live database.');
  if (opts.replace && opts.asNewDatabase === live) throw new UsageError('The new database must have a different name from the live one.');
  const warnings: string[] = [];

  const tmpBase = opts.tmpDir ?? os.tmpdir();
  await fsp.mkdir(tmpBase, { recursive: true, mode: 0o700 });
  const tmpRoot = await fsp.mkdtemp(path.join(tmpBase, 'clinicvault-pg-'));
  // Maintenance connection: the server's "postgres" database, so we are never connected to the live one.
  const admin = await connect(target, 'postgres')
    .catch(async (err: unknown) => {
      if (err instanceof UsageError && /no database named/.test(err.message)) return connect(target, 'template1');
      throw err;
    })
    .catch(async (err: unknown) => {
      await fsp.rm(tmpRoot, { recursive: true, force: true });
      throw err;
    });
  try {
    if (await exists(admin, newDb)) {
      throw new RefusedError(`A database named "${newDb}" already exists on the server; nothing was changed. Choose another name with --as-new-database.`);
    }
    const server = await serverMajor(admin);
    const dumpMajor = Number(/(\d+)/.exec(src.dump.tool.replace(/^[^)]*\)/, ''))?.[1] ?? 0);
    const tools = await findPgTools(Math.max(Math.floor(server.num / 10000), dumpMajor), server.version);

    // 1. The dump (and roles) out of the vault into a private temporary folder.
    log(`Reading the backup of "${src.label}" from the vault...`);
    const include = [`${src.label}/${src.label}.dump`];
    const hasGlobals = src.entries.some((e) => e.path === 'globals.sql');
    if (hasGlobals) include.push(`${src.label}/globals.sql`);
    const files = await restore(vault, snapshot, { target: tmpRoot, include });
    if (files.failed.length > 0) {
      throw new ClinicVaultError(`The backup's copy of the database could not be read from the vault: ${files.failed.map((f) => `${f.path}: ${f.reason}`).join('; ')}. Run verify --read-data.`);
    }
    const dumpFile = path.join(tmpRoot, src.label, `${src.label}.dump`);

    // 2. Roles: re-create the owner role if this server does not have it (best effort, needs CREATEROLE).
    const ownerExists = (await admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [src.owner])).rowCount! > 0;
    let noOwner = false;
    if (!ownerExists) {
      if (hasGlobals) {
        log(`Creating the roles saved with the backup (the owner "${src.owner}" is missing here)...`);
        await run(tools.psql, ['-X', '-q', '--no-password', '-f', path.join(tmpRoot, src.label, 'globals.sql')], pgEnv(target, 'postgres'), 'Creating roles').catch((err: Error) => {
          warnings.push(`Some roles could not be created (${err.message}).`);
        });
      }
      noOwner = (await admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [src.owner])).rowCount === 0;
      if (noOwner) warnings.push(`The role "${src.owner}" that owned the database does not exist on this server; the restored objects belong to "${target.user}".`);
    }

    // 3. A new database, then pg_restore into it, stopping at the first error.
    log(`Creating the new database "${newDb}"...`);
    const enc = `ENCODING ${quoteLiteral(src.encoding)}`;
    await admin.query(`CREATE DATABASE ${quoteIdent(newDb)} TEMPLATE template0 ${enc} LC_COLLATE ${quoteLiteral(src.collate)} LC_CTYPE ${quoteLiteral(src.ctype)}`).catch(async (err: { code?: string }) => {
      // The original locale may not exist on this machine: fall back to the server's default.
      if (err.code !== '22023' && err.code !== '42704' && err.code !== '22P02') throw err;
      warnings.push(`The original collation ${src.collate} is not available here; the server's default was used.`);
      await admin.query(`CREATE DATABASE ${quoteIdent(newDb)} TEMPLATE template0 ${enc}`);
    });
    const args = ['--exit-on-error', '--no-password', `--dbname=${newDb}`];
    if (noOwner) args.push('--no-owner', '--no-acl');
    const only = opts.tables?.map(tableKey);
    if (only) {
      for (const t of only) {
        if (!(t in src.tables)) throw new UsageError(`The backup has no table "${t}". Tables in it: ${Object.keys(src.tables).slice(0, 20).join(', ')}.`);
        const [schema, table] = t.split('.') as [string, string];
        args.push(`--schema=${schema}`, `--table=${table}`);
      }
    }
    args.push(dumpFile);
    log(`Restoring into "${newDb}" with ${path.basename(tools.pgRestore)} ${tools.major}...`);
    try {
      await run(tools.pgRestore, args, pgEnv(target, newDb), 'pg_restore');
    } catch (err) {
      throw new ClinicVaultError(`${(err as Error).message}. The live database was not touched; the partly restored "${newDb}" was left for inspection (drop it when done).`);
    }

    // 4. Proof: every table's row count equals the snapshot's.
    const check = await connect(target, newDb);
    let actual: Record<string, number>;
    try {
      actual = await countRows(check, only);
    } finally {
      await check.end().catch(() => undefined);
    }
    const expected = only ? Object.fromEntries(only.map((t) => [t, src.tables[t]!])) : src.tables;
    const tables: PgRestoreResult['tables'] = {};
    for (const k of new Set([...Object.keys(expected), ...Object.keys(actual)])) tables[k] = { expected: expected[k] ?? -1, actual: actual[k] ?? -1 };
    const bad = Object.entries(tables).filter(([, v]) => v.expected !== v.actual);
    if (bad.length > 0) {
      throw new ClinicVaultError(
        `The restored database "${newDb}" does not match the backup: ${bad.slice(0, 5).map(([k, v]) => `${k} has ${v.actual} rows, the backup had ${v.expected}`).join('; ')}. ` +
          'The live database was not touched.',
      );
    }

    // 5. Only now, if asked: swap names, keeping the previous database.
    let replaced: PgRestoreResult['replaced'] = null;
    if (opts.replace) {
      const keptAs = `${live}_before_restore_${stamp(now())}`.slice(0, 63);
      if (await exists(admin, live)) {
        const others = await admin.query<{ application_name: string; usename: string; client_addr: string | null }>(
          'SELECT application_name, usename, client_addr::text AS client_addr FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
          [live],
        );
        if (others.rows.length > 0) {
          const who = [...new Set(others.rows.map((r) => `${r.application_name || 'an unnamed program'} (user ${r.usename}${r.client_addr ? ` from ${r.client_addr}` : ''})`))];
          throw new RefusedError(
            `The restored copy "${newDb}" is ready and checked, but ${others.rows.length} connection(s) are still using "${live}": ${who.join(', ')}. ` +
              'Close the clinic application (and any other program using the database), then run the restore again. Nothing was replaced.',
          );
        }
        await admin.query(`ALTER DATABASE ${quoteIdent(live)} RENAME TO ${quoteIdent(keptAs)}`);
        replaced = { live, keptAs };
      } else {
        replaced = { live, keptAs: '' };
      }
      await admin.query(`ALTER DATABASE ${quoteIdent(newDb)} RENAME TO ${quoteIdent(live)}`);
      log(replaced.keptAs ? `"${live}" now holds the restored data; the previous database is kept as "${keptAs}".` : `"${live}" now holds the restored data.`);
    }
    return { database: replaced ? live : newDb, replaced, tables, ok: true, warnings, durationMs: Math.round(performance.now() - t0) };
  } catch (err) {
    if (err instanceof ClinicVaultError) throw err;
    throw describePgError(err, target);
  } finally {
    await admin.end().catch(() => undefined);
    await fsp.rm(tmpRoot, { recursive: true, force: true }).catch(() => undefined);
  }
}

function quoteLiteral(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

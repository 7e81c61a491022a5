// Export: one snapshot as a portable bundle, FILE.tar.age: a tar archive (archiver) encrypted to a passphrase in
// the age format. It opens with the standard tools and no ClinicVault:
//     age --decrypt --output bundle.tar FILE.tar.age && tar -xf bundle.tar
// Inside, one folder: README.txt, manifest.json, the databases and media laid out as a restore would, and
// SHA256SUMS (checked with `sha256sum -c SHA256SUMS` in that folder). A migration bundle adds MIGRATION.md.
//
// SQLite databases are restored to a private scratch folder first, and checked (integrity, row counts) before they
// go in: an export never carries a database that fails its check. Everything else streams from the vault into the
// archive, chunk by chunk, so memory stays flat whatever the size. The bundle is written to a temporary name and
// renamed when complete; an existing file is never overwritten.
import Database from 'better-sqlite3';
import { createHash, randomBytes, type Hash } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AgeEncryptStream, defaultLogN } from './age.js';
import { restore } from '../restore.js';
import { sha256File } from '../sources/folder.js';
import { publishFile } from '../vault/storage.js';
import { DamageError, DriveFullError, RefusedError, UsageError, isNoSpace } from '../errors.js';
import { checkNewPassphrase } from '../vault/keys.js';
import { BlobOpener, ChunkIntegrityError, blobRuns } from '../vault/pack.js';
import { decodeContent, type SnapshotSource, type TreeEntry } from '../vault/snapshot.js';
import type { MasterIndex } from '../vault/index-file.js';
import { formatFeatures, type SnapshotListing, type Vault } from '../vault/vault.js';

export interface MigrationInfo {
  from: string;
  to: string;
}

export interface ExportOptions {
  out: string;
  passphrase: string;
  /** A migration bundle: MIGRATION.md with the schema state and a rollback plan. The caller tags the snapshot. */
  migration?: MigrationInfo;
  vaultLocation?: string;
  tmpDir?: string;
  appVersion?: string;
  log?: (msg: string) => void;
}

export interface ExportResult {
  out: string;
  folder: string;
  snapshot: string;
  files: number;
  bytes: number;
  archiveBytes: number;
  durationMs: number;
}

interface SchemaState {
  label: string;
  kind: SnapshotSource['kind'];
  migrations: { table: string; applied: string[] } | null;
  userVersion?: number;
  tables: Record<string, number>;
}

/** Read at most 8 MiB of consecutive blobs of one pack at a time, authenticate each chunk, hash and yield it. */
async function* fileChunks(vault: Vault, index: MasterIndex, display: string, entry: TreeEntry, hash: Hash): AsyncGenerator<Buffer> {
  const list = decodeContent(entry.content).map((id) => {
    const e = index.get(id);
    if (!e) throw new DamageError(`${display}: a chunk is missing from the vault, so it cannot be exported. Run "clinicvault verify".`);
    return e;
  });
  const opener = new BlobOpener(vault.keys, formatFeatures(vault.config).boundIds);
  for (const run of blobRuns(list, 8 * 1024 * 1024)) {
    const buf = await vault.storage.readAt('data', run.pack, run.start, run.end - run.start);
    for (const e of list.slice(run.from, run.to)) {
      const at = e.blob.offset - run.start;
      let plain: Buffer;
      try {
        plain = opener.open(buf.subarray(at, at + e.blob.length), e.blob, e.pack);
      } catch (err) {
        if (err instanceof ChunkIntegrityError) throw new DamageError(`${display} cannot be exported: ${err.message}. Run "clinicvault verify --read-data".`);
        throw err;
      }
      hash.update(plain);
      yield plain;
    }
  }
}

function sqliteSchemaState(file: string, label: string, tables: Record<string, number>): SchemaState {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const has = (t: string): boolean => !!db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(t);
    let migrations: SchemaState['migrations'] = null;
    if (has('django_migrations')) migrations = { table: 'django_migrations', applied: db.prepare("SELECT app || '.' || name FROM django_migrations ORDER BY id").pluck().all() as string[] };
    else if (has('alembic_version')) migrations = { table: 'alembic_version', applied: db.prepare('SELECT version_num FROM alembic_version ORDER BY 1').pluck().all() as string[] };
    else if (has('schema_migrations')) migrations = { table: 'schema_migrations', applied: (db.prepare('SELECT version FROM schema_migrations ORDER BY 1').pluck().all() as unknown[]).map(String) };
    return { label, kind: 'sqlite', migrations, userVersion: db.pragma('user_version', { simple: true }) as number, tables };
  } finally {
    db.close();
  }
}

export async function exportSnapshot(vault: Vault, snap: SnapshotListing, opts: ExportOptions): Promise<ExportResult> {
  const t0 = performance.now();
  const log = opts.log ?? (() => undefined);
  checkNewPassphrase(opts.passphrase);
  const out = path.resolve(opts.out);
  if (await fsp.lstat(out).then(() => true, () => false)) throw new RefusedError(`${out} already exists; nothing was overwritten. Choose another file name.`);
  const outDir = path.dirname(out);
  if (!(await fsp.stat(outDir).then((s) => s.isDirectory(), () => false))) throw new UsageError(`The folder ${outDir} does not exist. Create it or choose another place for the export.`);
  const s = snap.snapshot;
  const folder = `clinicvault-export-${s.time.slice(0, 10)}-${snap.id.slice(0, 8)}`;
  const tmpBase = opts.tmpDir ?? os.tmpdir();
  await fsp.mkdir(tmpBase, { recursive: true, mode: 0o700 });
  const scratch = await fsp.mkdtemp(path.join(tmpBase, 'clinicvault-export-'));
  const partial = path.join(outDir, `.${path.basename(out)}.partial-${randomBytes(4).toString('hex')}`);
  try {
    const index = await vault.loadIndex();
    // 1. SQLite databases: restored and checked before they go in.
    const schema: SchemaState[] = [];
    const sqliteLabels = s.sources.filter((x) => x.kind === 'sqlite').map((x) => x.label);
    if (sqliteLabels.length > 0) {
      log(`Restoring ${sqliteLabels.join(', ')} from the vault and checking ${sqliteLabels.length > 1 ? 'them' : 'it'}...`);
      const r = await restore(vault, s, { target: scratch, include: sqliteLabels, index, fullIntegrityCheck: true });
      const bad = [...r.failed.map((f) => `${f.path}: ${f.reason}`), ...r.databases.filter((d) => !d.ok).map((d) => `${d.label}: integrity ${d.integrityCheck}, or row counts differ`)];
      if (bad.length > 0) throw new DamageError(`The backup's database does not pass its check, so it was not exported: ${bad.join('; ')}. Run "clinicvault verify --read-data".`);
    }
    for (const src of s.sources) {
      if (src.kind === 'sqlite') schema.push(sqliteSchemaState(path.join(scratch, src.label), src.label, src.tables));
      if (src.kind === 'postgres') schema.push({ label: src.label, kind: 'postgres', migrations: src.migrations, tables: src.tables });
    }

    // 2. The archive, encrypted as it is produced.
    // Loaded here: archiver takes ~0.3 s to load, which no other command should pay.
    const { TarArchive } = await import('archiver');
    const archive = new TarArchive();
    const ws = fs.createWriteStream(partial, { flags: 'wx', mode: 0o600 });
    const done = pipeline(archive, new AgeEncryptStream(opts.passphrase, defaultLogN()), ws);
    done.catch(() => undefined); // awaited below; this only keeps an early failure from counting as unhandled
    const fail = (err: unknown): void => void archive.destroy(err as Error);
    const sums: Array<[string, string]> = [];
    const waits: Array<Promise<void>> = [];
    let files = 0;
    let bytes = 0;
    const date = new Date(s.time);
    const put = (rel: string, data: string | Buffer): void => {
      archive.append(Buffer.from(data), { name: `${folder}/${rel}`, date: new Date(), mode: 0o600 });
    };
    const manifest = {
      format: 'clinicvault-export',
      version: 1,
      exported: new Date().toISOString(),
      exportedBy: opts.appVersion ?? null,
      vault: { id: vault.id, location: opts.vaultLocation ?? null },
      snapshot: { id: snap.id, time: s.time, host: s.host, tags: s.tags, appVersion: s.appVersion, totals: s.totals, erasures: s.erasures ?? [] },
      sources: s.sources.map(({ entries, ...rest }) => ({ ...rest, files: entries.filter((e) => e.type === 'file').map((e) => ({ path: e.path, size: e.size, mtime: new Date(e.mtimeMs).toISOString() })) })),
      schema,
      migration: opts.migration ?? null,
    };
    put('README.txt', readme(folder, snap, opts.migration));
    put('manifest.json', JSON.stringify(manifest, null, 2) + '\n');
    if (opts.migration) put('MIGRATION.md', migrationPlan(folder, snap, schema, opts.migration, opts.vaultLocation ?? vault.location));

    for (const src of s.sources) {
      if (src.kind === 'sqlite') {
        const file = path.join(scratch, src.label);
        sums.push([await sha256File(file), src.label]);
        archive.file(file, { name: `${folder}/${src.label}`, date, mode: 0o600 });
        files++;
        bytes += src.size;
        continue;
      }
      for (const e of src.entries) {
        const rel = `${src.label}/${e.path}`;
        if (e.type === 'dir') {
          archive.append(null, { name: `${folder}/${rel}/`, type: 'directory', date: new Date(e.mtimeMs), mode: 0o700 });
          continue;
        }
        const hash = createHash('sha256');
        const gen = fileChunks(vault, index, rel, e, hash);
        waits.push(
          new Promise<void>((resolve, reject) => {
            const stream = Readable.from(gen, { objectMode: false });
            stream.on('error', (err) => {
              fail(err);
              reject(err);
            });
            stream.on('end', () => {
              sums.push([hash.digest('hex'), rel]);
              resolve();
            });
            archive.append(stream, { name: `${folder}/${rel}`, stats: { size: e.size }, date: new Date(e.mtimeMs), mode: 0o600 });
          }),
        );
        files++;
        bytes += e.size;
      }
    }
    await Promise.race([Promise.all(waits), done.then(() => Promise.reject(new Error('the archive ended early')))]);
    sums.sort((a, b) => a[1].localeCompare(b[1]));
    put('SHA256SUMS', sums.map(([h, p]) => `${h}  ${p}\n`).join(''));
    await archive.finalize();
    await done;
    const fh = await fsp.open(partial, 'r');
    await fh.sync().finally(() => fh.close());
    await publishFile(partial, out).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'EEXIST') throw new RefusedError(`${out} appeared while exporting; nothing was overwritten. The export was not saved.`);
      throw err;
    });
    return { out, folder, snapshot: snap.id, files, bytes, archiveBytes: (await fsp.stat(out)).size, durationMs: Math.round(performance.now() - t0) };
  } catch (err) {
    await fsp.rm(partial, { force: true }).catch(() => undefined);
    if (isNoSpace(err)) throw new DriveFullError(`The drive holding ${outDir} is full; the export was not saved. Free some space or export to another drive.`, { cause: err });
    throw err;
  } finally {
    await fsp.rm(scratch, { recursive: true, force: true });
  }
}

function readme(folder: string, snap: SnapshotListing, migration?: MigrationInfo): string {
  const s = snap.snapshot;
  const lines = [
    `ClinicVault export of the backup made on ${s.time} on ${s.host}`,
    '='.repeat(72),
    '',
    'This folder holds one complete backup of the clinic, exported from a ClinicVault vault. It needs no',
    'ClinicVault to read; the encrypted file it came in opens with the standard "age" and "tar" tools:',
    '',
    '    age --decrypt --output bundle.tar FILE.tar.age     (asks for the export passphrase)',
    '    tar -xf bundle.tar',
    '',
    'Contents',
    '--------',
    '  README.txt      this file',
    '  manifest.json   what the backup holds: sources, tables and row counts, every file with size and time',
    '  SHA256SUMS      a checksum per file; check them all with:  sha256sum -c SHA256SUMS  (inside this folder)',
  ];
  if (migration) lines.push('  MIGRATION.md    the pre-migration checklist and rollback plan');
  for (const src of s.sources) {
    if (src.kind === 'sqlite') {
      lines.push(`  ${src.label}`.padEnd(18) + `SQLite database (${Object.keys(src.tables).length} tables, integrity checked when exported).`);
      lines.push(''.padEnd(18) + 'Open it with the clinic software, "sqlite3", or DB Browser for SQLite.');
    } else if (src.kind === 'folder') {
      lines.push(`  ${src.label}/`.padEnd(18) + `the folder ${src.originalPath} (${src.fileCount} files), as it was.`);
    } else {
      lines.push(`  ${src.label}/`.padEnd(18) + `PostgreSQL database "${src.server.database}" (server ${src.server.version}):`);
      lines.push(''.padEnd(18) + `${src.label}.dump is a pg_dump custom-format archive. Restore it into a new database with`);
      lines.push(''.padEnd(18) + `  createdb NEWNAME && pg_restore --dbname NEWNAME --exit-on-error ${src.label}.dump`);
      if (src.globals.included) lines.push(''.padEnd(18) + 'globals.sql holds the roles (run it with psql first if they do not exist).');
    }
  }
  lines.push('', 'This is patient data. Keep it encrypted; delete the decrypted copy when you are done.', '', `(${folder})`, '');
  return lines.join('\n');
}

function migrationPlan(folder: string, snap: SnapshotListing, schema: SchemaState[], m: MigrationInfo, vaultLocation: string): string {
  const s = snap.snapshot;
  const out: string[] = [
    `# Migration from ${m.from} to ${m.to}: checklist and rollback plan`,
    '',
    `Backup ${snap.id} made on ${s.time} on ${s.host}, tagged \`pre-migration\` (the retention policy never forgets it).`,
    '',
    '## Before the migration',
    '',
    `- [ ] This bundle was exported and its checksums pass: \`sha256sum -c SHA256SUMS\` in \`${folder}/\`.`,
    '- [ ] Everyone has closed the clinic software; no one works until the migration is done.',
    `- [ ] Write down the version now running: ${m.from}. The new version: ${m.to}.`,
    '',
    '## Schema state at the backup',
    '',
  ];
  for (const st of schema) {
    out.push(`### ${st.label} (${st.kind === 'sqlite' ? 'SQLite' : 'PostgreSQL'})`, '');
    if (st.migrations) {
      out.push(`Migrations recorded in \`${st.migrations.table}\`: ${st.migrations.applied.length}; the last ones:`, '');
      for (const a of st.migrations.applied.slice(-10)) out.push(`- ${a}`);
    } else out.push('No migration table (django_migrations, alembic_version, schema_migrations) was found.');
    if (st.userVersion !== undefined) out.push('', `SQLite user_version: ${st.userVersion}.`);
    out.push('', 'Row counts at the backup (check them after a rollback):', '', '| table | rows |', '| --- | --- |');
    for (const [t, n] of Object.entries(st.tables).sort()) out.push(`| ${t} | ${n} |`);
    out.push('');
  }
  out.push('## Rollback plan (if the migration fails or the new version misbehaves)', '');
  let step = 1;
  out.push(`${step++}. Stop: everyone closes the clinic software. Do not delete anything.`);
  out.push(`${step++}. Take a safety backup of the current (failed) state, so nothing is lost:`, `   \`clinicvault backup --vault "${vaultLocation}" ... --tag pre-restore\` (the same sources as every night).`);
  for (const src of s.sources) {
    if (src.kind === 'sqlite') {
      out.push(
        `${step++}. Restore the database ${src.label} from backup ${snap.id.slice(0, 8)} into an empty folder:`,
        `   \`clinicvault restore --vault "${vaultLocation}" --snapshot ${snap.id} --include "${src.label}" --target RESTORE_FOLDER\``,
        '   ClinicVault checks its integrity and row counts. Then replace the database file at',
        `   ${src.originalPath} with RESTORE_FOLDER/${src.label} (keep the failed one aside, renamed).`,
      );
    } else if (src.kind === 'postgres') {
      out.push(
        `${step++}. Restore the PostgreSQL database ${src.server.database} and swap it in (the failed one is kept, renamed):`,
        `   \`clinicvault restore --vault "${vaultLocation}" --snapshot ${snap.id} --postgres-target "${src.originalPath}" --replace\``,
        '   ClinicVault restores into a new database, compares every row count, and only then swaps.',
      );
    } else {
      out.push(
        `${step++}. If the new version changed files in ${src.originalPath}, restore the folder from the same backup into an empty folder and`,
        `   move it into place: \`clinicvault restore --vault "${vaultLocation}" --snapshot ${snap.id} --include "${src.label}" --target RESTORE_FOLDER\``,
      );
    }
  }
  out.push(
    `${step++}. Reinstall the clinic software version ${m.from}.`,
    `${step++}. Start it and check: the row counts above match, the last patient entered before the backup is there.`,
    `${step++}. Write down what failed, and contact the software vendor before trying ${m.to} again.`,
    '',
  );
  return out.join('\n');
}

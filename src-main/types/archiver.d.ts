// archiver 8 ships no types; this declares the part ClinicVault uses (TarArchive, a Transform producing tar bytes).
declare module 'archiver' {
  import type { Readable, Transform } from 'node:stream';

  export interface EntryData {
    name: string;
    date?: Date;
    mode?: number;
    type?: 'file' | 'directory';
    /** With a stream source, the size lets archiver stream the entry instead of buffering it whole. */
    stats?: { size: number };
  }

  export class TarArchive extends Transform {
    constructor(options?: { gzip?: boolean });
    append(source: Buffer | Readable | string | null, data: EntryData): this;
    file(filepath: string, data: EntryData): this;
    finalize(): Promise<void>;
    pointer(): number;
    abort(): this;
  }
}

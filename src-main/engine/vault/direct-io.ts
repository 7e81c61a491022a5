// Writing past the page cache (O_DIRECT, decision 0019), for packs (storage.ts, TempFile): a pack is written once,
// made durable at once and not read back by the process that writes it; on the 2026-12-02 machine, copying 1.5 GB
// of packs through the page cache cost the kernel 2-8 CPU-seconds. Restored files' long stretches too
// (engine-worker.ts, RestoreOut, decision 0029): a restore writes 1.7 GB it does not read again. O_DIRECT needs
// memory, file offsets and lengths aligned to the disk's logical block: memory comes from alignedMemory, and what
// is not a whole aligned block goes through the page cache as before. Linux only (Node has the flag nowhere else);
// a file system that refuses it (EINVAL) is written through the page cache.
import { constants as fsc } from 'node:fs';

/** The open(2) flag, where the platform has it. */
export const O_DIRECT: number | undefined = fsc.O_DIRECT;
/** Alignment of memory, offsets and lengths for O_DIRECT: 4 KiB covers every common disk's logical block. */
export const DIRECT_ALIGN = 4096;

/** Memory at a page boundary, which O_DIRECT needs: a WebAssembly memory's buffer starts on a page, Node's buffers
 * do not (malloc's alignment). Only the pages touched become resident. */
export function alignedMemory(bytes: number): Buffer {
  const pages = Math.ceil(bytes / 65536);
  const wasm = (globalThis as unknown as { WebAssembly: { Memory: new (d: { initial: number; maximum: number }) => { buffer: ArrayBuffer } } }).WebAssembly;
  return Buffer.from(new wasm.Memory({ initial: pages, maximum: pages }).buffer, 0, bytes);
}

/** Whether an error means "this file system does not do O_DIRECT". */
export function refusesDirect(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'EINVAL';
}

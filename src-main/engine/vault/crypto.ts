// Cryptographic primitives of the vault, all from node:crypto: AES-256-GCM sealing, HMAC-SHA256 chunk ids,
// scrypt and HKDF key derivation. Nothing here knows about files.
import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes, scrypt, type DecipherGCM } from 'node:crypto';

export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
export const SEAL_OVERHEAD = NONCE_BYTES + TAG_BYTES;

export class AuthError extends Error {
  constructor(what: string) {
    super(`authentication failed: ${what}`);
    this.name = 'AuthError';
  }
}

/** Random nonces drawn 1024 at a time: one call to the system RNG instead of one per chunk. */
let noncePool = Buffer.alloc(0);
let noncePos = 0;
function nextNonce(): Buffer {
  if (noncePos + NONCE_BYTES > noncePool.length) {
    noncePool = randomBytes(NONCE_BYTES * 1024);
    noncePos = 0;
  }
  const n = noncePool.subarray(noncePos, noncePos + NONCE_BYTES);
  noncePos += NONCE_BYTES;
  return n;
}

/** Additional authenticated data: a role's name (UTF-8), or bytes (a data blob's role and its chunk's id, format 3). */
export type Aad = string | Uint8Array;

function aadBytes(aad: Aad): Uint8Array {
  return typeof aad === 'string' ? Buffer.from(aad, 'utf8') : aad;
}

/** What an AuthError names: the role, or "a chunk" for a data blob's bytes. */
function aadName(aad: Aad): string {
  return typeof aad === 'string' ? aad : 'a chunk';
}

/** nonce(12) || ciphertext || tag(16). aad binds the ciphertext to its role (e.g. "chunk", "snapshot"). */
export function seal(key: Buffer, plaintext: Uint8Array, aad: Aad): Buffer {
  return Buffer.concat(sealParts(key, plaintext, aad));
}

/** The sealed bytes in pieces: the nonce, the ciphertext of each piece of plaintext as it is taken, the tag. */
function* sealing(key: Buffer, plaintext: Iterable<Uint8Array>, aad: Aad): Generator<Buffer> {
  const nonce = nextNonce();
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(aadBytes(aad));
  yield nonce;
  for (const piece of plaintext) {
    const body = cipher.update(piece);
    if (body.length > 0) yield body;
  }
  const final = cipher.final();
  if (final.length > 0) yield final;
  yield cipher.getAuthTag();
}

/** seal() as its pieces, for a writer that writes them one after the other: a megabyte chunk is not copied once
 * more only to join 28 bytes to it. The plaintext may come in pieces too (the same bytes as joined). */
export function sealParts(key: Buffer, plaintext: Uint8Array | readonly Uint8Array[], aad: Aad): Buffer[] {
  return [...sealing(key, plaintext instanceof Uint8Array ? [plaintext] : plaintext, aad)];
}

/** A sealed blob whose ciphertext is made as its pieces are taken (sealLazily). */
export interface LazySealed {
  /** Bytes of all the pieces together: the plaintext's length plus SEAL_OVERHEAD. */
  readonly length: number;
  /** nonce, the ciphertext in pieces, tag: one pass only. */
  readonly pieces: Iterable<Buffer>;
}

/** The bytes sealParts makes, with each piece of ciphertext (at most `piece` bytes) made only when the consumer takes
 * it: a writer that copies pieces into its blocks holds one piece at a time, not a copy of the whole blob (a whole
 * photo of several MB, decision 0020). The plaintext must not change until every piece is taken. */
export function sealLazily(key: Buffer, plaintext: Uint8Array, aad: Aad, piece: number): LazySealed {
  function* slices(): Generator<Uint8Array> {
    for (let at = 0; at < plaintext.length; at += piece) yield plaintext.subarray(at, Math.min(plaintext.length, at + piece));
  }
  return { length: plaintext.length + SEAL_OVERHEAD, pieces: sealing(key, slices(), aad) };
}

/** seal() of the parts laid end to end, made piece by piece (at most `piece` bytes each) as they are taken: a writer
 * that writes each before taking the next holds one piece of ciphertext, not all of it. */
export function sealPiecewise(key: Buffer, parts: readonly Uint8Array[], aad: Aad, piece: number): Iterable<Buffer> {
  function* slices(): Generator<Uint8Array> {
    for (const p of parts) for (let at = 0; at < p.length; at += piece) yield p.subarray(at, Math.min(p.length, at + piece));
  }
  return sealing(key, slices(), aad);
}

export function open(key: Buffer, sealed: Uint8Array, aad: Aad, what = aadName(aad)): Buffer {
  if (sealed.length < SEAL_OVERHEAD) throw new AuthError(what);
  const buf = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.length);
  const nonce = buf.subarray(0, NONCE_BYTES);
  const tag = buf.subarray(buf.length - TAG_BYTES);
  const decipher = createDecipheriv('aes-256-gcm', key, nonce);
  decipher.setAAD(aadBytes(aad));
  decipher.setAuthTag(tag);
  try {
    const body = decipher.update(buf.subarray(NONCE_BYTES, buf.length - TAG_BYTES));
    const final = decipher.final();
    // GCM returns everything from update(); joining an empty final would copy the whole plaintext once more.
    return final.length > 0 ? Buffer.concat([body, final]) : body;
  } catch {
    throw new AuthError(what);
  }
}

/** A sealed blob opened as its bytes arrive: the nonce first, then the ciphertext in pieces of any size, then the
 * tag (read last, from the blob's end). What update returns is not authenticated until finish returns. */
export class GcmOpening {
  private readonly decipher: DecipherGCM;

  constructor(key: Buffer, nonce: Uint8Array, aad: Aad, private readonly what = aadName(aad)) {
    this.decipher = createDecipheriv('aes-256-gcm', key, nonce);
    this.decipher.setAAD(aadBytes(aad));
  }

  update(part: Uint8Array): Buffer {
    return this.decipher.update(part);
  }

  /** Check the tag; throws AuthError if the blob does not authenticate. */
  finish(tag: Uint8Array): void {
    try {
      this.decipher.setAuthTag(tag);
      this.decipher.final();
    } catch {
      throw new AuthError(this.what);
    }
  }
}

export function hmac(key: Buffer, data: Uint8Array): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

/** The SHA-256 of data, or of its pieces joined. */
export function sha256(data: Uint8Array | readonly Uint8Array[]): Buffer {
  const h = createHash('sha256');
  for (const piece of data instanceof Uint8Array ? [data] : data) h.update(piece);
  return h.digest();
}

export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export interface ScryptParams {
  N: number;
  r: number;
  p: number;
}

/** Why scrypt parameters read from a drive (a key file, config.json) are refused, or undefined if they are not.
 * ClinicVault writes N=2^15, r=8, p=3 (N=2^10 in tests); a damaged or planted file must not make an unlock take
 * gigabytes of memory (scrypt needs 128*N*r bytes) or minutes, nor fail with OpenSSL's bare message. */
export function scryptParamsProblem(params: ScryptParams): string | undefined {
  const { N, r, p } = params;
  if (!Number.isInteger(N) || N < 2 ** 10 || N > 2 ** 20 || (N & (N - 1)) !== 0) return `N is ${String(N)}, not a power of two from 1024 to 1048576`;
  if (!Number.isInteger(r) || r < 1 || r > 32) return `r is ${String(r)}, not 1 to 32`;
  if (!Number.isInteger(p) || p < 1 || p > 16) return `p is ${String(p)}, not 1 to 16`;
  if (128 * N * r > 256 * 1024 * 1024) return `N=${N} with r=${r} would need ${(128 * N * r) / 2 ** 20} MiB of memory, more than 256`;
  return undefined;
}

/** Derivations started ahead of the unlock that needs them (deriveAhead in keys.ts), by salt and parameters: the
 * same secret gives the same key, so the unlock takes the one under way. Each is taken once. */
const ahead = new Map<string, { secret: string; key: Promise<Buffer> }>();

/** How many derivations started ahead are waiting to be taken (for tests). */
export function derivationsAhead(): number {
  return ahead.size;
}

/** The key scrypt derives from secret and salt. With `early`, the derivation is also kept for the next call with the
 * same secret, salt and parameters, which takes it instead of starting its own. */
export function scryptKey(secret: string, salt: Buffer, params: ScryptParams, early = false): Promise<Buffer> {
  const tag = `${params.N}:${params.r}:${params.p}:${salt.toString('base64')}`;
  const started = ahead.get(tag);
  if (started && started.secret === secret) {
    ahead.delete(tag);
    return started.key;
  }
  const problem = scryptParamsProblem(params);
  if (problem) {
    const refused = Promise.reject(new RangeError(`scrypt parameters out of range: ${problem}`));
    if (early) refused.catch(() => undefined);
    return refused;
  }
  const maxmem = 128 * params.N * params.r * params.p + 64 * 1024 * 1024;
  const key = new Promise<Buffer>((resolve, reject) => {
    scrypt(secret.normalize('NFC'), salt, 32, { ...params, maxmem }, (err, derived) => (err ? reject(err) : resolve(derived)));
  });
  if (early) {
    key.catch(() => undefined);
    ahead.set(tag, { secret, key });
  }
  return key;
}

export function hkdfKey(secret: Buffer, salt: Buffer, info: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, salt, Buffer.from(info, 'utf8'), 32));
}

export { randomBytes };

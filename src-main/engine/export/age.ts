// The age file format (https://age-encryption.org/v1), passphrase recipient only, written with node:crypto.
// An export bundle must open years later with the standard `age` tool and nothing of ClinicVault, so the format is
// age's, byte for byte; the primitives are node:crypto's (decision 0010). Streaming: 64 KiB chunks, so a bundle
// of any size is encrypted in constant memory.
//
//   header:  "age-encryption.org/v1\n"
//            "-> scrypt <base64(salt16)> <log2 N>\n" <base64(ChaCha20-Poly1305(scrypt key, zero nonce, file key))> "\n"
//            "--- " <base64(HMAC-SHA256(HKDF(file key, "", "header"), header up to and including "---"))> "\n"
//   payload: nonce16 || STREAM chunks: ChaCha20-Poly1305(HKDF(file key, nonce16, "payload"),
//            nonce = 11-byte big-endian counter || last-chunk flag, 64 KiB of plaintext)
import { createCipheriv, createHmac, hkdfSync, randomBytes, scryptSync } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

const CHUNK = 64 * 1024;
const TAG = 16;
/** age's own default work factor; the test build uses a small one so tests stay fast (like the vault's KDF). */
export function defaultLogN(): number {
  return process.env.CLINICVAULT_KDF === 'test' ? 10 : 18;
}

const b64 = (b: Buffer): string => b.toString('base64').replace(/=+$/, '');

function seal(key: Buffer, nonce: Buffer, plain: Buffer): Buffer {
  const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG });
  return Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
}

function hkdf(ikm: Buffer, salt: Buffer, info: string): Buffer {
  return Buffer.from(hkdfSync('sha256', ikm, salt, info, 32));
}

/** The age header for a passphrase, and the payload key material. */
export function ageHeader(passphrase: string, logN = defaultLogN()): { header: Buffer; fileKey: Buffer } {
  if (!Number.isInteger(logN) || logN < 1 || logN > 22) throw new Error('age scrypt work factor out of range');
  const fileKey = randomBytes(16);
  const salt = randomBytes(16);
  const N = 2 ** logN;
  const wrapKey = scryptSync(Buffer.from(passphrase.normalize('NFC'), 'utf8'), Buffer.concat([Buffer.from('age-encryption.org/v1/scrypt'), salt]), 32, {
    N,
    r: 8,
    p: 1,
    maxmem: 128 * N * 8 + 16 * 1024 * 1024,
  });
  const body = b64(seal(wrapKey, Buffer.alloc(12), fileKey)); // 43 characters: a single, short final line
  const upToMac = `age-encryption.org/v1\n-> scrypt ${b64(salt)} ${logN}\n${body}\n---`;
  const mac = createHmac('sha256', hkdf(fileKey, Buffer.alloc(0), 'header')).update(upToMac).digest();
  return { header: Buffer.from(`${upToMac} ${b64(mac)}\n`), fileKey };
}

/** A Transform that turns plaintext into an age file encrypted to a passphrase. */
export class AgeEncryptStream extends Transform {
  private readonly key: Buffer;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private counter = 0n;

  constructor(passphrase: string, logN = defaultLogN()) {
    super();
    const { header, fileKey } = ageHeader(passphrase, logN);
    const nonce = randomBytes(16);
    this.key = hkdf(fileKey, nonce, 'payload');
    this.push(header);
    this.push(nonce);
  }

  private sealChunk(plain: Buffer, last: boolean): Buffer {
    const nonce = Buffer.alloc(12);
    nonce.writeBigUInt64BE(this.counter & 0xffffffffffffffffn, 3); // 11-byte counter; 2^64 chunks is never reached
    nonce[11] = last ? 1 : 0;
    this.counter++;
    return seal(this.key, nonce, plain);
  }

  override _transform(data: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.pending.push(data);
    this.pendingBytes += data.length;
    // Keep more than one chunk back: the last chunk must carry the last-chunk flag, and only the end tells which.
    if (this.pendingBytes > CHUNK) {
      let all = Buffer.concat(this.pending);
      while (all.length > CHUNK) {
        this.push(this.sealChunk(all.subarray(0, CHUNK), false));
        all = all.subarray(CHUNK);
      }
      this.pending = [Buffer.from(all)];
      this.pendingBytes = all.length;
    }
    done();
  }

  override _flush(done: TransformCallback): void {
    // At most one chunk left (possibly empty, only when the whole payload is empty).
    this.push(this.sealChunk(Buffer.concat(this.pending), true));
    done();
  }
}

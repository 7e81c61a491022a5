import { describe, expect, it } from 'vitest';
import { decodeRecoveryKey, encodeRecoveryKey, generateRecoveryKey } from '../../src-main/engine/vault/recovery-key.js';

describe('recovery key', () => {
  it('round-trips and forgives case, spacing and look-alike letters', () => {
    for (let i = 0; i < 50; i++) {
      const { bytes, text } = generateRecoveryKey();
      expect(text).toMatch(/^([0-9A-Z]{5}-){7}[0-9A-Z]{5}$/);
      expect(decodeRecoveryKey(text)).toEqual(bytes);
      expect(decodeRecoveryKey(text.toLowerCase().replace(/-/g, ' '))).toEqual(bytes);
      expect(decodeRecoveryKey(text.replace(/0/g, 'O').replace(/1/g, 'l'))).toEqual(bytes);
    }
  });

  it('locates a single-character typo in its group', () => {
    const text = encodeRecoveryKey(Buffer.alloc(20, 7));
    const chars = [...text];
    const pos = 14; // third group
    chars[pos] = chars[pos] === 'A' ? 'B' : 'A';
    expect(() => decodeRecoveryKey(chars.join(''))).toThrow(/group 3 .* typo/);
  });

  it('rejects a truncated key with a plain message', () => {
    expect(() => decodeRecoveryKey('ABCDE-FGHJK')).toThrow(/8 groups of 5 characters/);
  });
});

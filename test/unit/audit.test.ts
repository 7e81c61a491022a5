import { describe, expect, it } from 'vitest';
import * as path from 'node:path';
import { Inventory, verifyAuditChain } from '../../src-main/engine/inventory/inventory.js';
import { tempDir } from '../helpers/clinic.js';

describe('audit log', () => {
  it('is hash-chained, append-only, and tampering is detected', () => {
    const inv = new Inventory(path.join(tempDir(), 'inv.sqlite'));
    inv.audit('vault.init', 'v1', { location: '/x' });
    inv.audit('backup', 'v1', { snapshot: 'abc', files: 3 });
    inv.audit('restore', 'v1', { snapshot: 'abc' });
    const log = inv.auditLog();
    expect(log.map((r) => r.seq)).toEqual([1, 2, 3]);
    expect(verifyAuditChain(log)).toBeUndefined();
    expect(() => inv.db.prepare('DELETE FROM audit WHERE seq = 2').run()).toThrow(/append-only/);
    expect(() => inv.db.prepare("UPDATE audit SET action = 'x'").run()).toThrow(/append-only/);
    const altered = log.map((r) => (r.seq === 2 ? { ...r, details: { snapshot: 'abc', files: 4 } } : r));
    expect(verifyAuditChain(altered)).toMatch(/entry 2 was altered/);
    expect(verifyAuditChain([log[0]!, log[2]!])).toMatch(/follows entry 1/);
    inv.close();
  });

  it('imports a carried history into an empty inventory (new PC)', () => {
    const a = new Inventory(path.join(tempDir(), 'a.sqlite'));
    a.audit('vault.init', 'v1');
    a.audit('backup', 'v1', { snapshot: 's1' });
    const b = new Inventory(path.join(tempDir(), 'b.sqlite'));
    expect(b.importAudit(a.auditLog())).toBe(2);
    b.audit('inventory.rebuild', 'v1');
    expect(verifyAuditChain(b.auditLog())).toBeUndefined();
    expect(b.auditLog().map((r) => r.action)).toEqual(['vault.init', 'backup', 'inventory.rebuild']);
  });
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  pagingMode,
  translate,
  translateRange,
  PFEC_INSN,
  PFEC_PRESENT,
  PFEC_RSVD,
  PFEC_USER,
  PFEC_WRITE,
  type PagingState,
  type PhysicalMemory,
} from './page-walker.js';

const P = 1n, RW = 2n, US = 4n, A = 0x20n, D = 0x40n, PS = 0x80n, NX = 1n << 63n;
const DEF = P | RW | US;
const KiB = 1024, MiB = 1024 * KiB, GiB = 1024 * MiB;

const CR0_PE = 1n, CR0_WP = 1n << 16n, CR0_PG = 1n << 31n;
const CR4_PSE = 1n << 4n, CR4_PAE = 1n << 5n, CR4_LA57 = 1n << 12n;
const EFER_LME = 1n << 8n, EFER_LMA = 1n << 10n, EFER_NXE = 1n << 11n;

/** Guest RAM as a byte array; asserts every access is sane. */
class FakeMem implements PhysicalMemory {
  readonly buf: Uint8Array;
  readonly dv: DataView;
  writes: { gpa: number; width: 32 | 64 }[] = [];
  private next = 0x1000;
  constructor(size = 4 * MiB) {
    this.buf = new Uint8Array(size);
    this.dv = new DataView(this.buf.buffer);
  }
  private ok(gpa: number, n: number): boolean {
    assert.ok(Number.isSafeInteger(gpa) && gpa >= 0, `bad gpa ${gpa}`);
    assert.equal(gpa % n, 0, `misaligned ${gpa}`);
    return gpa + n <= this.buf.length;
  }
  readU32(gpa: number) { return this.ok(gpa, 4) ? this.dv.getUint32(gpa, true) : undefined; }
  writeU32(gpa: number, v: number) {
    if (!this.ok(gpa, 4)) return false;
    this.dv.setUint32(gpa, v, true);
    this.writes.push({ gpa, width: 32 });
    return true;
  }
  writeU64(gpa: number, v: bigint) {
    if (!this.ok(gpa, 8)) return false;
    this.dv.setBigUint64(gpa, v, true);
    this.writes.push({ gpa, width: 64 });
    return true;
  }
  alloc(): number {
    const p = this.next;
    this.next += 4096;
    return p;
  }
  get64(a: number) { return this.dv.getBigUint64(a, true); }
  set64(a: number, v: bigint) { this.dv.setBigUint64(a, v, true); }
  get32(a: number) { return this.dv.getUint32(a, true); }
  set32(a: number, v: number) { this.dv.setUint32(a, v, true); }
  readOnly(): PhysicalMemory {
    return { readU32: (g) => this.readU32(g) };
  }
}

const idx = (va: bigint, level: number) => Number((va >> BigInt(12 + 9 * (level - 1))) & 0x1ffn);

/** Maps va in a 64-bit-entry hierarchy rooted at `table`; returns entry addresses, top first. */
function map64(m: FakeMem, table: number, top: number, va: bigint, leafLevel: number, leaf: bigint, upper = DEF): number[] {
  const addrs: number[] = [];
  for (let level = top; level > leafLevel; level--) {
    const ea = table + idx(va, level) * 8;
    let e = m.get64(ea);
    if (!(e & P)) {
      e = BigInt(m.alloc()) | upper;
      m.set64(ea, e);
    }
    addrs.push(ea);
    table = Number(e & 0xf_ffff_ffff_f000n);
  }
  const ea = table + idx(va, leafLevel) * 8;
  m.set64(ea, leaf);
  addrs.push(ea);
  return addrs;
}

function long(m: FakeMem, opts: { la57?: boolean; nxe?: boolean; wp?: boolean } = {}) {
  const root = m.alloc();
  const s: PagingState = {
    cr0: CR0_PE | CR0_PG | (opts.wp === false ? 0n : CR0_WP),
    cr3: BigInt(root),
    cr4: CR4_PAE | (opts.la57 ? CR4_LA57 : 0n),
    efer: EFER_LME | EFER_LMA | (opts.nxe === false ? 0n : EFER_NXE),
  };
  const top = opts.la57 ? 5 : 4;
  return { s, map: (va: bigint, leafLevel: number, leaf: bigint, upper = DEF) => map64(m, root, top, va, leafLevel, leaf, upper) };
}

function pae(m: FakeMem, nxe = true) {
  const pdpt = m.alloc() + 0x20; // only 32-byte alignment is required
  const s: PagingState = { cr0: Number(CR0_PE | CR0_PG | CR0_WP), cr3: pdpt, cr4: Number(CR4_PAE), efer: nxe ? Number(EFER_NXE) : 0 };
  const map = (va: bigint, leafLevel: number, leaf: bigint, upper = DEF) => {
    const pe = pdpt + Number((va >> 30n) & 3n) * 8;
    if (!(m.get64(pe) & P)) m.set64(pe, BigInt(m.alloc()) | P);
    return [pe, ...map64(m, Number(m.get64(pe) & ~0xfffn), 2, va, leafLevel, leaf, upper)];
  };
  return { s, pdpt, map };
}

function legacy(m: FakeMem, pse = true) {
  const pd = m.alloc();
  const s: PagingState = { cr0: CR0_PE | CR0_PG | CR0_WP, cr3: BigInt(pd), cr4: pse ? CR4_PSE : 0n, efer: 0n };
  const pdeAddr = (va: number) => pd + ((va >>> 22) & 0x3ff) * 4;
  const map4k = (va: number, pte: number, pdeFlags = Number(DEF)) => {
    const pa = pdeAddr(va);
    if (!(m.get32(pa) & 1)) m.set32(pa, (m.alloc() | pdeFlags) >>> 0);
    const pta = (m.get32(pa) & 0xfffff000) + ((va >>> 12) & 0x3ff) * 4;
    m.set32(pta, pte >>> 0);
    return [pa, pta];
  };
  const map4m = (va: number, pde: number) => {
    m.set32(pdeAddr(va), pde >>> 0);
    return pdeAddr(va);
  };
  return { s, map4k, map4m };
}

function pf(r: ReturnType<typeof translate>): number {
  assert.equal(r.ok, false);
  assert.ok(!r.ok && r.fault === 'page-fault', JSON.stringify(r, (_, v) => (typeof v === 'bigint' ? `${v}n` : v)));
  return r.errorCode;
}

function gpa(r: ReturnType<typeof translate>): number {
  assert.ok(r.ok, JSON.stringify(r, (_, v) => (typeof v === 'bigint' ? `${v}n` : v)));
  return r.gpa;
}

test('pagingMode', () => {
  const base = { cr0: CR0_PE | CR0_PG, cr3: 0, cr4: 0n, efer: 0n };
  assert.equal(pagingMode({ ...base, cr0: CR0_PE }), 'none');
  assert.equal(pagingMode(base), '32bit');
  assert.equal(pagingMode({ ...base, cr4: CR4_PAE }), 'pae');
  assert.equal(pagingMode({ ...base, cr4: CR4_PAE, efer: EFER_LME | EFER_LMA }), '4level');
  assert.equal(pagingMode({ ...base, cr4: CR4_PAE | CR4_LA57, efer: EFER_LMA }), '5level');
  assert.equal(pagingMode({ cr0: 0x80000011, cr3: 0, cr4: 0x20, efer: 0x500 }), '4level');
});

test('paging off is identity on the low 32 bits', () => {
  const m = new FakeMem();
  const s = { cr0: 1, cr3: 0, cr4: 0, efer: 0 };
  assert.deepEqual(translate(m, s, 0x1234_5678), { ok: true, gpa: 0x1234_5678, pageSize: 4096, level: 0 });
  assert.equal(gpa(translate(m, s, 0x1_0000_1234n, { write: true, user: true })), 0x1234);
  assert.equal(m.writes.length, 0);
});

test('32-bit paging: 4K and 4M pages, PSE off, PSE-36', () => {
  const m = new FakeMem();
  const { s, map4k, map4m } = legacy(m);
  map4k(0x0040_1000, 0x0abc_d000 | Number(DEF));
  assert.deepEqual(translate(m, s, 0x0040_1234), { ok: true, gpa: 0x0abc_d234, pageSize: 4096, level: 1 });
  map4m(0xc000_0000, 0x0100_0000 | Number(DEF | PS));
  assert.deepEqual(translate(m, s, 0xc012_3456n), { ok: true, gpa: 0x0112_3456, pageSize: 4 * MiB, level: 2 });
  // PSE-36: PDE bits 20:13 supply physical bits 39:32.
  map4m(0x8000_0000, 0x0040_0000 | (0x12 << 13) | Number(DEF | PS));
  assert.equal(gpa(translate(m, s, 0x8000_0010)), 0x12_0040_0010);
  // Bit 21 of a 4M PDE is reserved.
  map4m(0x8040_0000, 0x0040_0000 | (1 << 21) | Number(DEF | PS));
  assert.equal(pf(translate(m, s, 0x8040_0000, { write: true })), PFEC_PRESENT | PFEC_RSVD | PFEC_WRITE);
  // Without CR4.PSE the PS bit is ignored and the PDE points at a page table.
  const noPse = legacy(m, false);
  const [pde] = noPse.map4k(0x0040_3000, 0x0055_5000 | Number(DEF));
  m.set32(pde, m.get32(pde) | Number(PS));
  assert.deepEqual(translate(m, noPse.s, 0x0040_3008), { ok: true, gpa: 0x0055_5008, pageSize: 4096, level: 1 });
  // 32-bit paging never sets the I/D bit, even with EFER.NXE.
  assert.equal(pf(translate(m, { ...s, efer: EFER_NXE }, 0x0080_0000, { fetch: true })), 0);
});

test('32-bit paging: not present, permissions', () => {
  const m = new FakeMem();
  const { s, map4k } = legacy(m);
  assert.equal(pf(translate(m, s, 0x0000_0000, { user: true })), PFEC_USER); // PDE not present
  map4k(0x0040_0000, 0x0010_0000); // PTE not present
  assert.equal(pf(translate(m, s, 0x0040_0000, { write: true })), PFEC_WRITE);
  map4k(0x0040_1000, 0x0010_0000 | Number(P | US), Number(DEF)); // read-only
  assert.equal(pf(translate(m, s, 0x0040_1000, { write: true })), PFEC_PRESENT | PFEC_WRITE);
  assert.equal(gpa(translate(m, { ...s, cr0: CR0_PE | CR0_PG }, 0x0040_1000, { write: true })), 0x0010_0000);
  map4k(0x0080_0000, 0x0020_0000 | Number(DEF), Number(P | RW)); // supervisor PDE
  assert.equal(pf(translate(m, s, 0x0080_0000, { user: true })), PFEC_PRESENT | PFEC_USER);
  assert.equal(gpa(translate(m, s, 0x0080_0000, { write: true })), 0x0020_0000);
});

test('32-bit paging: A/D bits use 32-bit writes', () => {
  const m = new FakeMem();
  const { s, map4k, map4m } = legacy(m);
  const [pde, pte] = map4k(0x0040_1000, 0x0010_0000 | Number(DEF));
  translate(m, s, 0x0040_1000);
  assert.equal(m.get32(pde) & 0x60, 0x20);
  assert.equal(m.get32(pte) & 0x60, 0x20);
  translate(m, s, 0x0040_1000, { write: true });
  assert.equal(m.get32(pde) & 0x60, 0x20); // D only on the leaf
  assert.equal(m.get32(pte) & 0x60, 0x60);
  const big = map4m(0xc000_0000, 0x0100_0000 | Number(DEF | PS));
  translate(m, s, 0xc000_0000, { write: true });
  assert.equal(m.get32(big) & 0x60, 0x60);
  assert.ok(m.writes.length > 0 && m.writes.every((w) => w.width === 32));
});

test('PAE: 4K and 2M pages, PDPTE not present / reserved', () => {
  const m = new FakeMem();
  const { s, pdpt, map } = pae(m);
  map(0x0040_1000n, 1, 0x1_2345_6000n | DEF); // above 4 GiB
  assert.deepEqual(translate(m, s, 0x0040_1abc), { ok: true, gpa: 0x1_2345_6abc, pageSize: 4096, level: 1 });
  map(0xc020_0000n, 2, 0x0060_0000n | DEF | PS);
  assert.deepEqual(translate(m, s, 0xc02f_ffff), { ok: true, gpa: 0x006f_ffff, pageSize: 2 * MiB, level: 2 });
  // PDPTE 1 (0x4000_0000..) is not present.
  assert.equal(pf(translate(m, s, 0x4000_0000, { write: true, user: true })), PFEC_WRITE | PFEC_USER);
  // R/W is reserved in a PDPTE.
  m.set64(pdpt + 8, BigInt(m.alloc()) | P | RW);
  assert.equal(pf(translate(m, s, 0x4000_0000)), PFEC_PRESENT | PFEC_RSVD);
  // PDPTEs never get an Accessed bit.
  assert.equal(m.get64(pdpt) & A, 0n);
  // Bits 62:M are reserved in PAE entries (unlike 4-level).
  const [, , pte] = map(0x0040_2000n, 1, (1n << 55n) | 0x5000n | DEF);
  assert.equal(pf(translate(m, s, 0x0040_2000)), PFEC_PRESENT | PFEC_RSVD);
  assert.equal(m.get64(pte) & A, 0n);
  // Linear addresses are 32 bits wide.
  assert.equal(gpa(translate(m, s, 0xffff_ffff_0040_1000n)), 0x1_2345_6000);
});

test('PAE PDPTE: the Accessed bit AMD\'s walk sets is reserved on Intel only; 2:1 and 8:6 on both; A/D never written', () => {
  const m = new FakeMem();
  const { s, map } = pae(m);
  const [pdpte, pde, pte] = map(0x0040_1000n, 1, 0x0010_7000n | DEF);
  m.set64(pdpte, m.get64(pdpte) | A); // as AMD's walk leaves it: 0x...001 read back as 0x...021
  const before = m.get64(pdpte);
  const intel = pf(translate(m, s, 0x0040_1abc, { write: true }));
  assert.equal(intel, PFEC_WRITE | PFEC_PRESENT | PFEC_RSVD);
  assert.equal(pf(translate(m, { ...s, vendor: 'intel' }, 0x0040_1abc, { write: true })), intel, 'Intel is the default');
  assert.equal(m.writes.length, 0, 'nothing written on a fault');
  const amd = { ...s, vendor: 'amd' as const };
  assert.deepEqual(translate(m, amd, 0x0040_1abc, { write: true }), { ok: true, gpa: 0x0010_7abc, pageSize: 4096, level: 1 });
  assert.equal(m.get64(pdpte), before, 'the PDPTE is left alone');
  assert.equal(m.get64(pde) & A, A);
  assert.equal(m.get64(pte) & (A | D), A | D);
  assert.ok(m.writes.every((w) => w.gpa !== pdpte));
  // The other reserved low bits fault on AMD too.
  for (const bit of [1n, 2n, 6n, 7n, 8n]) {
    m.set64(pdpte, before | (1n << bit));
    assert.equal(pf(translate(m, amd, 0x0040_1abc)), PFEC_PRESENT | PFEC_RSVD, `bit ${bit}`);
    assert.equal(pf(translate(m, s, 0x0040_1abc)), PFEC_PRESENT | PFEC_RSVD, `bit ${bit}`);
  }
  // A PDPTE without A: both vendors walk it, and neither sets A in it.
  m.set64(pdpte, before & ~A);
  for (const vendor of ['intel', 'amd'] as const) {
    assert.equal(gpa(translate(m, { ...s, vendor }, 0x0040_1abc)), 0x0010_7abc);
    assert.equal(m.get64(pdpte), before & ~A, vendor);
  }
});

test('PAE: NX with and without EFER.NXE, PDE not present', () => {
  const m = new FakeMem();
  const { s, map } = pae(m);
  map(0x0040_0000n, 1, 0x0010_0000n | DEF | NX);
  assert.equal(gpa(translate(m, s, 0x0040_0000)), 0x0010_0000);
  assert.equal(pf(translate(m, s, 0x0040_0000, { fetch: true })), PFEC_PRESENT | PFEC_INSN);
  assert.equal(pf(translate(m, s, 0x0040_0000, { fetch: true, user: true })), PFEC_PRESENT | PFEC_INSN | PFEC_USER);
  const noNx = { ...s, efer: 0 };
  assert.equal(pf(translate(m, noNx, 0x0040_0000)), PFEC_PRESENT | PFEC_RSVD);
  assert.equal(pf(translate(m, noNx, 0x0040_1000, { fetch: true })), 0); // PDE present, PTE not; no I/D
  assert.equal(pf(translate(m, s, 0x3fe0_0000, { fetch: true })), PFEC_INSN); // PDE not present
});

test('4-level: 4K, 2M, 1G pages and offsets', () => {
  const m = new FakeMem();
  const { s, map } = long(m);
  map(0x7f12_3456_7000n, 1, 0xf_edcb_a000n | DEF);
  assert.deepEqual(translate(m, s, 0x7f12_3456_7abcn), { ok: true, gpa: 0xf_edcb_aabc, pageSize: 4096, level: 1 });
  map(0x4000_0000_0000n, 2, 0x8000_0000n | DEF | PS | (1n << 12n)); // bit 12 = PAT, not address
  assert.deepEqual(translate(m, s, 0x4000_001f_fff0n), { ok: true, gpa: 0x801f_fff0, pageSize: 2 * MiB, level: 2 });
  map(0xffff_8000_0000_0000n, 3, 0x1_c000_0000n | DEF | PS);
  assert.deepEqual(translate(m, s, 0xffff_8000_3fff_ffffn), { ok: true, gpa: 0x1_ffff_ffff, pageSize: GiB, level: 3 });
  // Numbers and bigints are interchangeable for state and addresses.
  const sNum = { cr0: Number(s.cr0), cr3: Number(s.cr3), cr4: Number(s.cr4), efer: Number(s.efer) };
  assert.equal(gpa(translate(m, sNum, 0x7f12_3456_7abc)), 0xf_edcb_aabc);
  // Bits 62:52 are software-available in long mode, not reserved.
  map(0x10_0000_0000n, 1, (0x7ffn << 52n) | 0x3000n | DEF);
  assert.equal(gpa(translate(m, s, 0x10_0000_0010n)), 0x3010);
});

test('4-level: not present at each level', () => {
  const m = new FakeMem();
  const { s, map } = long(m);
  const va = 0x1_4060_3000n;
  const addrs = map(va, 1, 0x5000n | DEF);
  assert.equal(gpa(translate(m, s, va)), 0x5000);
  for (let i = addrs.length - 1; i >= 0; i--) {
    m.set64(addrs[i], m.get64(addrs[i]) & ~P);
    assert.equal(pf(translate(m, s, va, { write: true, user: true })), PFEC_WRITE | PFEC_USER, `level ${4 - i}`);
    assert.equal(pf(translate(m, s, va, { fetch: true })), PFEC_INSN);
    assert.equal(pf(translate(m, s, va)), 0);
  }
});

test('4-level: write protection, user/supervisor, NX at upper level', () => {
  const m = new FakeMem();
  const { s, map } = long(m);
  map(0x1000n, 1, 0x9000n | P | US); // read-only leaf
  assert.equal(pf(translate(m, s, 0x1000, { write: true })), PFEC_PRESENT | PFEC_WRITE);
  assert.equal(pf(translate(m, s, 0x1000, { write: true, user: true })), PFEC_PRESENT | PFEC_WRITE | PFEC_USER);
  const noWp = { ...s, cr0: CR0_PE | CR0_PG };
  assert.equal(gpa(translate(m, noWp, 0x1000, { write: true })), 0x9000);
  assert.equal(pf(translate(m, noWp, 0x1000, { write: true, user: true })), PFEC_PRESENT | PFEC_WRITE | PFEC_USER);
  // Read-only at an upper level applies too.
  map(0x80_0000_0000n, 1, 0xa000n | DEF, P | US);
  assert.equal(pf(translate(m, s, 0x80_0000_0000n, { write: true })), PFEC_PRESENT | PFEC_WRITE);
  // Supervisor at an upper level denies user access; supervisor access to user pages is fine.
  map(0x100_0000_0000n, 1, 0xb000n | DEF, P | RW);
  assert.equal(pf(translate(m, s, 0x100_0000_0000n, { user: true })), PFEC_PRESENT | PFEC_USER);
  assert.equal(gpa(translate(m, s, 0x100_0000_0000n, { write: true })), 0xb000);
  // NX in an upper level forbids fetch.
  map(0x180_0000_0000n, 1, 0xc000n | DEF, DEF | NX);
  assert.equal(pf(translate(m, s, 0x180_0000_0000n, { fetch: true })), PFEC_PRESENT | PFEC_INSN);
  assert.equal(gpa(translate(m, s, 0x180_0000_0000n, { write: true, user: true })), 0xc000);
});

test('4-level: reserved bits', () => {
  const m = new FakeMem();
  const { s, map } = long(m);
  const rsvd = PFEC_PRESENT | PFEC_RSVD;
  // PS in a PML4E.
  const [pml4e] = map(0x1000n, 1, 0x9000n | DEF);
  m.set64(pml4e, m.get64(pml4e) | PS);
  assert.equal(pf(translate(m, s, 0x1000, { user: true })), rsvd | PFEC_USER);
  // 1G page with bits 29:13 set; 2M page with bits 20:13 set.
  map(0x80_4000_0000n, 3, 0x4000_0000n | (1n << 20n) | DEF | PS);
  assert.equal(pf(translate(m, s, 0x80_4000_0000n)), rsvd);
  map(0x80_8000_0000n, 2, 0x20_0000n | (1n << 13n) | DEF | PS);
  assert.equal(pf(translate(m, s, 0x80_8000_0000n, { fetch: true })), rsvd | PFEC_INSN);
  // Physical-address bits at or above MAXPHYADDR.
  map(0x100_0000_0000n, 1, (1n << 40n) | 0x5000n | DEF);
  assert.equal(gpa(translate(m, s, 0x100_0000_0000n)), 2 ** 40 + 0x5000);
  assert.equal(pf(translate(m, { ...s, maxPhysAddrBits: 40 }, 0x100_0000_0000n)), rsvd);
  assert.equal(gpa(translate(m, { ...s, maxPhysAddrBits: 41 }, 0x100_0000_0000n)), 2 ** 40 + 0x5000);
  // NX with NXE clear is reserved, even for plain reads.
  map(0x180_0000_0000n, 1, 0x6000n | DEF | NX);
  assert.equal(pf(translate(m, { ...s, efer: EFER_LMA }, 0x180_0000_0000n)), rsvd);
});

test('non-canonical addresses', () => {
  const m = new FakeMem();
  const four = long(m);
  four.map(0x0000_7fff_ffff_f000n, 1, 0x5000n | DEF);
  assert.equal(gpa(translate(m, four.s, 0x0000_7fff_ffff_f000n)), 0x5000);
  for (const va of [0x0000_8000_0000_0000n, 0xffff_7fff_ffff_ffffn, 0x8000_0000_0000_0000n, 0x0100_0000_0000_0000n]) {
    const r = translate(m, four.s, va, { write: true });
    assert.deepEqual(r, { ok: false, fault: 'page-fault', errorCode: 0, gva: va, nonCanonical: true });
  }
  const five = long(m, { la57: true });
  five.map(0x00ff_8000_0000_0000n, 1, 0x7000n | DEF);
  five.map(0xff00_0000_0000_1000n, 1, 0x8000n | DEF);
  assert.deepEqual(translate(m, five.s, 0x00ff_8000_0000_0123n), { ok: true, gpa: 0x7123, pageSize: 4096, level: 1 });
  assert.equal(gpa(translate(m, five.s, -0xff_ffff_ffff_f000)), 0x8000); // sign-extended number works too
  assert.equal(gpa(translate(m, five.s, 0xff00_0000_0000_1000n)), 0x8000);
  assert.equal(pf(translate(m, five.s, 0x0100_0000_0000_0000n)), 0);
  assert.equal(pf(translate(m, five.s, 0xfeff_ffff_ffff_ffffn)), 0);
});

test('5-level: pages at all sizes and reserved PS in PML5E', () => {
  const m = new FakeMem();
  const { s, map } = long(m, { la57: true });
  const addrs = map(0x0012_3456_789a_b000n, 1, 0x3_0000_0000n | DEF);
  assert.equal(addrs.length, 5);
  assert.deepEqual(translate(m, s, 0x0012_3456_789a_bcden), { ok: true, gpa: 0x3_0000_0cde, pageSize: 4096, level: 1 });
  map(0x0080_0000_4000_0000n, 3, 0x4000_0000n | DEF | PS);
  assert.equal(gpa(translate(m, s, 0x0080_0000_4000_0001n)), 0x4000_0001);
  m.set64(addrs[0], m.get64(addrs[0]) | PS);
  assert.equal(pf(translate(m, s, 0x0012_3456_789a_b000n)), PFEC_PRESENT | PFEC_RSVD);
  m.set64(addrs[0], m.get64(addrs[0]) & ~(PS | P));
  assert.equal(pf(translate(m, s, 0x0012_3456_789a_b000n)), 0);
});

test('tables outside guest RAM give bad-table', () => {
  const m = new FakeMem(1 * MiB);
  const { s, map } = long(m);
  assert.deepEqual(translate(m, { ...s, cr3: 0x4000_0000 }, 0xffff_8000_0000_1000n), { ok: false, fault: 'bad-table', gpa: 0x4000_0000 + 256 * 8 });
  const addrs = map(0x1000n, 1, 0x5000n | DEF);
  m.set64(addrs[2], 0x7654_3000n | DEF); // PDE -> PT beyond RAM
  assert.deepEqual(translate(m, s, 0x1008, { write: true }), { ok: false, fault: 'bad-table', gpa: 0x7654_3000 + 8 });
  assert.equal(m.writes.length, 0);
  // PAE PDPT and 32-bit PD outside RAM.
  assert.deepEqual(translate(m, { cr0: CR0_PG, cr3: 0xffff_ffe0, cr4: CR4_PAE, efer: 0 }, 0xc000_0000), { ok: false, fault: 'bad-table', gpa: 0xffff_fff8 });
  assert.deepEqual(translate(m, { cr0: CR0_PG, cr3: 0x20_0000, cr4: 0, efer: 0 }, 0x0040_0000), { ok: false, fault: 'bad-table', gpa: 0x20_0004 });
});

test('A/D bits: set on success only, D only on leaf for writes, only with writers', () => {
  const m = new FakeMem();
  const { s, map } = long(m);
  const addrs = map(0x1000n, 1, 0x9000n | DEF);
  const ro = map(0x2000n, 1, 0xa000n | P | US);
  const before = m.buf.slice();
  assert.equal(gpa(translate(m.readOnly(), s, 0x1000, { write: true })), 0x9000);
  assert.deepEqual(m.buf, before); // no writer callbacks: nothing written
  assert.equal(pf(translate(m, s, 0x2000, { write: true })), PFEC_PRESENT | PFEC_WRITE);
  assert.equal(pf(translate(m, s, 0x20_0000, { write: true })), PFEC_WRITE); // PDE absent
  assert.deepEqual(m.buf, before); // faults write nothing
  translate(m, s, 0x1000);
  for (const a of addrs) assert.equal(m.get64(a) & (A | D), A);
  translate(m, s, 0x1000, { write: true });
  assert.deepEqual(addrs.map((a) => m.get64(a) & (A | D)), [A, A, A, A | D]);
  assert.equal(m.get64(addrs[3]), 0x9000n | DEF | A | D);
  const n = m.writes.length;
  translate(m, s, 0x1000, { write: true });
  assert.equal(m.writes.length, n); // already set: no rewrite
  assert.ok(m.writes.every((w) => w.width === 64));
  assert.equal(m.get64(ro[3]) & A, 0n);
  // Only writeU32 available: update the low dword of 64-bit entries.
  const m2 = new FakeMem();
  const l2 = long(m2);
  const a2 = l2.map(0x1000n, 1, NX | 0x9000n | DEF);
  const only32: PhysicalMemory = { readU32: (g) => m2.readU32(g), writeU32: (g, v) => m2.writeU32(g, v) };
  translate(only32, l2.s, 0x1000, { write: true });
  assert.equal(m2.get64(a2[3]), NX | 0x9000n | DEF | A | D);
});

test('translateRange splits at page boundaries', () => {
  const m = new FakeMem();
  const { s, map } = long(m);
  map(0x40_0000n, 1, 0x7000n | DEF);
  map(0x40_1000n, 1, 0x3000n | DEF);
  assert.deepEqual(translateRange(m, s, 0x40_0ff0n, 0x20, { write: true }), {
    ok: true,
    pieces: [{ gpa: 0x7ff0, length: 0x10 }, { gpa: 0x3000, length: 0x10 }],
  });
  assert.deepEqual(translateRange(m, s, 0x40_0100, 0x100, {}), { ok: true, pieces: [{ gpa: 0x7100, length: 0x100 }] });
  assert.deepEqual(translateRange(m, s, 0x40_0100, 0, {}), { ok: true, pieces: [] });
  // Fault in the second page reports that page's address.
  const r = translateRange(m, s, 0x40_1ff0n, 0x20, { user: true });
  assert.deepEqual(r, { ok: false, fault: 'page-fault', errorCode: PFEC_USER, gva: 0x40_2000n });
  // One piece for a whole 2M page.
  map(0x60_0000n, 2, 0x20_0000n | DEF | PS);
  assert.deepEqual(translateRange(m, s, 0x60_0000, 2 * MiB, {}), { ok: true, pieces: [{ gpa: 0x20_0000, length: 2 * MiB }] });
  assert.throws(() => translateRange(m, s, 0, -1, {}), RangeError);
  // Paging off wraps at 4 GiB.
  assert.deepEqual(translateRange(m, { cr0: 1, cr3: 0, cr4: 0, efer: 0 }, 0xffff_fff0, 0x20, {}), {
    ok: true,
    pieces: [{ gpa: 0xffff_fff0, length: 0x10 }, { gpa: 0, length: 0x10 }],
  });
});

test('random garbage tables never throw or read out of bounds', () => {
  let seed = 0x12345678;
  const rnd = () => {
    seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
    return seed >>> 0;
  };
  const m = new FakeMem(64 * KiB);
  // Entries mostly point inside the 64 KiB so walks go deep.
  for (let a = 0; a < m.buf.length; a += 4) m.set32(a, rnd() % 4 === 0 ? rnd() : (rnd() & 0xf0ff) | (a % 8 === 0 ? 1 : 0));
  const rnd64 = () => (BigInt(rnd()) << 32n) | BigInt(rnd());
  const modes = [
    { cr0: CR0_PG, cr4: 0n, efer: 0n },
    { cr0: CR0_PG | CR0_WP, cr4: CR4_PSE, efer: 0n },
    { cr0: CR0_PG, cr4: CR4_PAE, efer: EFER_NXE },
    { cr0: CR0_PG, cr4: CR4_PAE, efer: EFER_LMA | EFER_NXE },
    { cr0: CR0_PG | CR0_WP, cr4: CR4_PAE | CR4_LA57, efer: EFER_LMA },
  ];
  const seen = new Set<string>();
  for (let i = 0; i < 20000; i++) {
    const md = modes[i % modes.length];
    const s = { ...md, cr3: BigInt(rnd() & 0x1ffff), maxPhysAddrBits: 36 + (rnd() % 17) };
    const access = { write: !!(rnd() & 1), user: !!(rnd() & 1), fetch: !!(rnd() & 1) };
    const va = rnd() & 1 ? rnd64() : BigInt(rnd());
    const r = i % 7 === 0 ? translateRange(m, s, va, rnd() % 9000, access) : translate(m, s, va, access);
    if (r.ok && 'gpa' in r) assert.ok(Number.isSafeInteger(r.gpa) && r.gpa >= 0 && r.gpa < 2 ** 52);
    seen.add(r.ok ? 'ok' : r.fault);
  }
  assert.deepEqual([...seen].sort(), ['bad-table', 'ok', 'page-fault']);
});

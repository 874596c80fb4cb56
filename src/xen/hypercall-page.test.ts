// The hypercall page: the stub bytes decoded by hand, disassembled by binutils
// in 64- and 32-bit mode, and the CPL > 0 path run for real (this process
// runs at CPL 3, so the stub must return -EPERM without reaching the `out`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import koffi from 'koffi';
import { HYPERCALL, HYPERCALL_ENTRY_SIZE, HYPERCALL_PAGE_ENTRIES } from './abi/hypercalls.js';
import { HYPERCALL_MSR, HYPERCALL_PORT, hypercallPage, hypercallPageTarget, hypercallStub } from './hypercall-page.js';

const EPERM = 1;

test('constants: port 0xe2, MSR 0x40000000, 32-byte stubs, 128 per page', () => {
  assert.equal(HYPERCALL_PORT, 0xe2);
  assert.equal(HYPERCALL_MSR, 0x4000_0000);
  assert.equal(HYPERCALL_ENTRY_SIZE, 32);
  assert.equal(HYPERCALL_PAGE_ENTRIES, 128);
});

/** Decodes one stub by hand, instruction by instruction, and checks each against the intended encoding. */
function checkStubByHand(stub: Uint8Array, nr: number): void {
  assert.equal(stub.length, 32);
  const b = [...stub];
  // 8C /r: MOV r/m16|32, Sreg — ModRM C8 = mod 11, reg 001 (CS), rm 000 (eAX).
  assert.deepEqual(b.slice(0, 2), [0x8c, 0xc8], 'mov %cs,%eax');
  // A8 ib: TEST AL, imm8.
  assert.deepEqual(b.slice(2, 4), [0xa8, 0x03], 'test $3,%al');
  // 75 cb: JNZ rel8, relative to the next instruction (offset 6): 6 + 8 = 14.
  assert.deepEqual(b.slice(4, 6), [0x75, 0x08], 'jnz +8');
  // B8 id: MOV EAX, imm32 — the number in bytes 7..10, little-endian.
  assert.equal(b[6], 0xb8, 'mov $imm32,%eax');
  assert.equal(new DataView(stub.buffer, stub.byteOffset).getUint32(7, true), nr, 'hypercall number at 7..10');
  // E7 ib: OUT imm8, EAX.
  assert.deepEqual(b.slice(11, 13), [0xe7, 0xe2], 'out %eax,$0xe2');
  assert.equal(b[13], 0xc3, 'ret');
  // Offset 14, the jnz target: REX.W 83 /1 ib = OR r/m64, imm8 (sign-extended) — ModRM C8 = mod 11, reg 001 (/1), rm 000 (rAX).
  assert.equal(6 + b[5], 14, 'jnz lands on the -EPERM path');
  assert.deepEqual(b.slice(14, 18), [0x48, 0x83, 0xc8, 0xff], 'or $-1,%rax');
  assert.equal(b[18], 0xc3, 'ret');
  assert.ok(b.slice(19).every((x) => x === 0xcc), 'rest is int3');
}

test('hypercallStub: the intended bytes for every hypercall number, decoded by hand', () => {
  for (let nr = 0; nr < HYPERCALL_PAGE_ENTRIES; nr++) checkStubByHand(hypercallStub(nr), nr);
});

test('hypercallStub: the number is encoded little-endian in the mov immediate', () => {
  assert.deepEqual([...hypercallStub(HYPERCALL.xen_version).subarray(7, 11)], [17, 0, 0, 0]);
  assert.deepEqual([...hypercallStub(HYPERCALL.hvm_op).subarray(7, 11)], [34, 0, 0, 0]);
  assert.deepEqual([...hypercallStub(0x7f).subarray(7, 11)], [0x7f, 0, 0, 0]);
});

test('hypercallPage: 4096 bytes, stub i at 32·i', () => {
  const page = hypercallPage();
  assert.equal(page.length, 4096);
  for (let nr = 0; nr < HYPERCALL_PAGE_ENTRIES; nr++) {
    assert.deepEqual(page.subarray(nr * 32, nr * 32 + 32), hypercallStub(nr), `stub ${nr}`);
  }
  // Fresh copies: changing one page does not change the next.
  page.fill(0);
  assert.equal(hypercallPage()[0], 0x8c);
});

// ---- binutils -------------------------------------------------------------

interface Insn {
  offset: number;
  bytes: number[];
  text: string;
}

/** objdump's disassembly of raw bytes in the given machine mode. */
function disassemble(bytes: Uint8Array, machine: 'i386:x86-64' | 'i386'): Insn[] {
  const dir = mkdtempSync(join(tmpdir(), 'xenkvm-stub-'));
  try {
    const file = join(dir, 'page.bin');
    writeFileSync(file, bytes);
    const out = execFileSync('objdump', ['-D', '-b', 'binary', `-m${machine}`, '-w', file], { encoding: 'utf8' });
    const insns: Insn[] = [];
    for (const line of out.split('\n')) {
      const m = /^\s*([0-9a-f]+):\t([0-9a-f ]+?)\s*\t(.*)$/.exec(line);
      if (!m) continue;
      const text = m[3]
        .replace(/\s+/g, ' ')
        .trim()
        .replace(/^retq?\b.*/, 'ret')
        .replace(/^jnz\b/, 'jne');
      insns.push({ offset: parseInt(m[1], 16), bytes: m[2].trim().split(/\s+/).map((x) => parseInt(x, 16)), text });
    }
    return insns;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function expectedListing(nr: number, base: number, mode: 64 | 32): [number, string][] {
  const hex = (n: number) => `0x${n.toString(16)}`;
  const head: [number, string][] = [
    [0, 'mov %cs,%eax'],
    [2, 'test $0x3,%al'],
    [4, `jne ${hex(base + 14)}`],
    [6, `mov $${hex(nr)},%eax`],
    [11, 'out %eax,$0xe2'],
    [13, 'ret'],
  ];
  const eperm: [number, string][] =
    mode === 64
      ? [[14, 'or $0xffffffffffffffff,%rax']]
      : // REX.W is `dec %eax` in 32-bit mode; the `or $-1` after it makes eax -1 anyway.
        [[14, 'dec %eax'], [15, 'or $0xffffffff,%eax']];
  const tail: [number, string][] = [[18, 'ret']];
  for (let o = 19; o < 32; o++) tail.push([o, 'int3']);
  return [...head, ...eperm, ...tail].map(([o, t]) => [base + o, t]);
}

for (const [machine, mode] of [['i386:x86-64', 64], ['i386', 32]] as const) {
  test(`hypercallPage: objdump -m${machine} disassembles every stub to the intended instructions`, () => {
    const page = hypercallPage();
    const insns = disassemble(page, machine);
    const expected = Array.from({ length: HYPERCALL_PAGE_ENTRIES }, (_, nr) => expectedListing(nr, nr * 32, mode)).flat();
    assert.deepEqual(
      insns.map((i) => [i.offset, i.text]),
      expected,
    );
    // The decoded lengths tile the page exactly.
    assert.equal(insns.reduce((n, i) => n + i.bytes.length, 0), 4096);
  });
}

for (const [entry, insn] of [['vmcall', 'vmcall'], ['vmmcall', 'vmmcall']] as const) {
  test(`hypercallPage('${entry}'): Xen's own stubs, mov and ${insn}, disassembled the same in 64- and 32-bit mode; sched_op's leaves by the port`, () => {
    const page = hypercallPage(entry);
    for (const machine of ['i386:x86-64', 'i386'] as const) {
      const expected = Array.from({ length: HYPERCALL_PAGE_ENTRIES }, (_, nr) => {
        const base = nr * 32;
        if (nr === HYPERCALL.sched_op) return expectedListing(nr, base, machine === 'i386' ? 32 : 64);
        const listing: [number, string][] = [[base, `mov $0x${nr.toString(16)},%eax`], [base + 5, insn], [base + 8, 'ret']];
        for (let o = 9; o < 32; o++) listing.push([base + o, 'int3']);
        return listing;
      }).flat();
      assert.deepEqual(disassemble(page, machine).map((i) => [i.offset, i.text]), expected, machine);
    }
  });
}

// ---- run for real ---------------------------------------------------------

test('hypercallStub: run natively at CPL 3 it returns -EPERM (-1) for every number', (t) => {
  if (process.arch !== 'x64') return t.skip('not x86-64');
  const lib = koffi.load('libc.so.6');
  const mmap = lib.func('void *mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t off)');
  const munmap = lib.func('int munmap(void *addr, size_t len)');
  const PROT_RWX = 7;
  const MAP_PRIVATE_ANONYMOUS = 0x22;
  const page = mmap(null, 4096, PROT_RWX, MAP_PRIVATE_ANONYMOUS, -1, 0) as bigint;
  if (!page || page === (1n << 64n) - 1n) return t.skip('no writable+executable mapping on this host');
  try {
    new Uint8Array(koffi.view(page, 4096)).set(hypercallPage());
    const stubType = koffi.proto('int64_t xenkvm_stub(void)');
    for (const nr of [0, 1, HYPERCALL.xen_version, HYPERCALL.hvm_op, 0x7f]) {
      const rax = koffi.call(page + BigInt(nr * 32), stubType) as number | bigint;
      assert.equal(BigInt(rax), BigInt(-EPERM), `stub ${nr}`);
    }
  } finally {
    munmap(page, 4096);
  }
});

// ---- the MSR value --------------------------------------------------------

test('hypercallPageTarget: page-aligned values give the guest-physical address', () => {
  assert.equal(hypercallPageTarget(0n), 0);
  assert.equal(hypercallPageTarget(0x1000n), 0x1000);
  assert.equal(hypercallPageTarget(0xfeed_f000n), 0xfeed_f000);
  assert.equal(hypercallPageTarget(0x1_2345_6000n), 0x1_2345_6000);
  assert.equal(hypercallPageTarget((1n << 52n) - 0x1000n), 2 ** 52 - 0x1000);
});

test('hypercallPageTarget: a page index other than 0 is refused', () => {
  for (const v of [1n, 0x1001n, 0x1fffn, 0xfffn, 0x2800n, (1n << 40n) | 0x800n]) assert.equal(hypercallPageTarget(v), undefined, `0x${v.toString(16)}`);
});

test('hypercallPageTarget: addresses at or above 2^52 are refused', () => {
  for (const v of [1n << 52n, (1n << 52n) + 0x1000n, 1n << 63n, 0xffff_ffff_ffff_f000n]) assert.equal(hypercallPageTarget(v), undefined, `0x${v.toString(16)}`);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BootError, EM_386, EM_X86_64, ET_EXEC, PT_LOAD, PT_NOTE, SHT_NOTE, XEN_ELFNOTE_GUEST_OS, XEN_ELFNOTE_PHYS32_ENTRY,
  Elf32Ehdr, Elf32Phdr, Elf32Shdr, Elf64Ehdr, Elf64Phdr, Elf64Shdr, ElfNhdr,
  findGuestOs, findPvhEntry, loadPvhKernel, parseElf,
} from './elf.js';

// --- a tiny in-memory ELF builder -------------------------------------------

interface SegSpec { type: number; paddr: number; data: Uint8Array; memsz?: number; align?: number; vaddr?: number }
interface SecSpec { name: string; type: number; data: Uint8Array; addralign?: number }
interface BuildOpts { cls: 32 | 64; machine?: number; type?: number; segments: SegSpec[]; sections?: SecSpec[] }

const ascii = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
const up = (n: number, a: number) => Math.ceil(n / a) * a;

function note(name: string, type: number, desc: Uint8Array, align = 4): Uint8Array {
  const nameBytes = name.length ? Uint8Array.from([...ascii(name), 0]) : new Uint8Array(0);
  const descAt = up(ElfNhdr.size + nameBytes.length, align);
  const out = new Uint8Array(up(descAt + desc.length, align));
  out.set(ElfNhdr.encode({ n_namesz: nameBytes.length, n_descsz: desc.length, n_type: type }));
  out.set(nameBytes, ElfNhdr.size);
  out.set(desc, descAt);
  return out;
}

const u32le = (v: number) => { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, v, true); return b; };
const u64le = (v: bigint) => { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, v, true); return b; };
const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
};
const xenEntryNote = (entry: number) => note('Xen', XEN_ELFNOTE_PHYS32_ENTRY, u32le(entry));

function buildElf(o: BuildOpts): Uint8Array {
  const is64 = o.cls === 64;
  const Ehdr = is64 ? Elf64Ehdr : Elf32Ehdr;
  const Phdr = is64 ? Elf64Phdr : Elf32Phdr;
  const Shdr = is64 ? Elf64Shdr : Elf32Shdr;
  const sections = o.sections ?? [];
  const phoff = Ehdr.size;
  let cursor = phoff + o.segments.length * Phdr.size;
  const segOff = o.segments.map((s) => { cursor = up(cursor, 16); const at = cursor; cursor += s.data.length; return at; });
  const secOff = sections.map((s) => { cursor = up(cursor, 16); const at = cursor; cursor += s.data.length; return at; });
  // Section 0 is null; the last is .shstrtab.
  const names = ['', ...sections.map((s) => s.name), '.shstrtab'];
  const nameOff: number[] = [];
  let strtab = new Uint8Array(0);
  for (const n of names) { nameOff.push(strtab.length); strtab = concat(strtab, ascii(n), Uint8Array.of(0)); }
  const strOff = cursor;
  cursor += strtab.length;
  const withSections = sections.length > 0;
  const shoff = withSections ? up(cursor, 8) : 0;
  const shnum = withSections ? names.length : 0;
  const total = withSections ? shoff + shnum * Shdr.size : cursor;

  const file = new Uint8Array(total);
  const view = new DataView(file.buffer);
  const big = (n: number) => (is64 ? BigInt(n) : n) as never;
  Ehdr.write(view, 0, {
    e_ident: Uint8Array.of(0x7f, 0x45, 0x4c, 0x46, is64 ? 2 : 1, 1, 1),
    e_type: o.type ?? ET_EXEC, e_machine: o.machine ?? (is64 ? EM_X86_64 : EM_386), e_version: 1,
    e_entry: big(0x100000), e_phoff: big(phoff), e_shoff: big(shoff), e_flags: 0,
    e_ehsize: Ehdr.size, e_phentsize: Phdr.size, e_phnum: o.segments.length,
    e_shentsize: Shdr.size, e_shnum: shnum, e_shstrndx: withSections ? names.length - 1 : 0,
  });
  o.segments.forEach((s, i) => {
    Phdr.write(view, phoff + i * Phdr.size, {
      p_type: s.type, p_flags: 5, p_offset: big(segOff[i]), p_vaddr: big(s.vaddr ?? s.paddr), p_paddr: big(s.paddr),
      p_filesz: big(s.data.length), p_memsz: big(s.memsz ?? s.data.length), p_align: big(s.align ?? 4),
    });
    file.set(s.data, segOff[i]);
  });
  sections.forEach((s, i) => file.set(s.data, secOff[i]));
  file.set(strtab, strOff);
  if (withSections) {
    const all = [
      ...sections.map((s, i) => ({ name: nameOff[i + 1], type: s.type, off: secOff[i], size: s.data.length, align: s.addralign ?? 4 })),
      { name: nameOff[names.length - 1], type: 3, off: strOff, size: strtab.length, align: 1 },
    ];
    all.forEach((s, i) => {
      Shdr.write(view, shoff + (i + 1) * Shdr.size, {
        sh_name: s.name, sh_type: s.type, sh_offset: big(s.off), sh_size: big(s.size), sh_addralign: big(s.align),
      });
    });
  }
  return file;
}

const code = (n: number) => new Uint8Array(n).fill(0xf4);
const RAM = [{ start: 0, end: 0x0800_0000 }];

function simpleKernel(cls: 32 | 64, extra: Partial<BuildOpts> = {}): Uint8Array {
  return buildElf({
    cls,
    segments: [
      { type: PT_LOAD, paddr: 0x100000, vaddr: 0x100000, data: code(0x200), memsz: 0x1000 },
      { type: PT_NOTE, paddr: 0, data: xenEntryNote(0x100010) },
    ],
    ...extra,
  });
}

const bootError = (re: RegExp) => (e: unknown) => e instanceof BootError && re.test(e.message);

// --- tests --------------------------------------------------------------------

test('struct sizes match the ELF spec', () => {
  assert.equal(Elf32Ehdr.size, 52);
  assert.equal(Elf64Ehdr.size, 64);
  assert.equal(Elf32Phdr.size, 32);
  assert.equal(Elf64Phdr.size, 56);
  assert.equal(Elf32Shdr.size, 40);
  assert.equal(Elf64Shdr.size, 64);
  assert.equal(Elf64Ehdr.offsets.e_phnum, 56);
  assert.equal(Elf32Ehdr.offsets.e_phnum, 44);
  assert.equal(Elf64Phdr.offsets.p_paddr, 24);
  assert.equal(Elf32Phdr.offsets.p_flags, 24);
});

for (const cls of [32, 64] as const) {
  test(`ELF${cls}: PVH note in a PT_NOTE segment, bss zero-filled`, () => {
    const file = simpleKernel(cls);
    const image = parseElf(file);
    assert.equal(image.class, cls);
    assert.equal(image.machine, cls === 64 ? EM_X86_64 : EM_386);
    assert.equal(image.segments.length, 2);
    assert.equal(findPvhEntry(file, image), 0x100010);
    const k = loadPvhKernel(file, RAM);
    assert.equal(k.entry, 0x100010);
    assert.equal(k.chunks.length, 1);
    assert.equal(k.chunks[0].gpa, 0x100000);
    assert.equal(k.chunks[0].bytes.length, 0x200);
    assert.equal(k.chunks[0].bytes[0], 0xf4);
    assert.equal(k.chunks[0].zeroFill, 0x1000 - 0x200);
    assert.equal(k.lowest, 0x100000);
    assert.equal(k.highest, 0x101000);
  });

  test(`ELF${cls}: PVH note only in a SHT_NOTE section`, () => {
    const file = buildElf({
      cls,
      segments: [{ type: PT_LOAD, paddr: 0x200000, data: code(64) }],
      sections: [
        { name: '.text', type: 1, data: code(16) },
        { name: '.note.Xen', type: SHT_NOTE, data: xenEntryNote(0x200004) },
      ],
    });
    const image = parseElf(file);
    assert.deepEqual(image.sections.map((s) => s.name), ['', '.text', '.note.Xen', '.shstrtab']);
    assert.equal(findPvhEntry(file, image), 0x200004);
    assert.equal(loadPvhKernel(file, RAM).entry, 0x200004);
  });
}

test('segment note is preferred over a section note', () => {
  const file = buildElf({
    cls: 64,
    segments: [
      { type: PT_LOAD, paddr: 0x100000, data: code(64) },
      { type: PT_NOTE, paddr: 0, data: xenEntryNote(0x100008) },
    ],
    sections: [{ name: '.note.other', type: SHT_NOTE, data: xenEntryNote(0x100020) }],
  });
  assert.equal(findPvhEntry(file, parseElf(file)), 0x100008);
});

test('8-byte descriptor, and above 4 GiB is refused', () => {
  const mk = (v: bigint) => buildElf({
    cls: 64,
    segments: [
      { type: PT_LOAD, paddr: 0x100000, data: code(64) },
      { type: PT_NOTE, paddr: 0, data: note('Xen', XEN_ELFNOTE_PHYS32_ENTRY, u64le(v)) },
    ],
  });
  const ok = mk(0x100030n);
  assert.equal(findPvhEntry(ok, parseElf(ok)), 0x100030);
  const high = mk(0x1_0000_0000n);
  assert.throws(() => findPvhEntry(high, parseElf(high)), bootError(/above 4 GiB/));
});

test('odd descriptor size is refused', () => {
  const file = buildElf({
    cls: 64,
    segments: [
      { type: PT_LOAD, paddr: 0x100000, data: code(64) },
      { type: PT_NOTE, paddr: 0, data: note('Xen', XEN_ELFNOTE_PHYS32_ENTRY, Uint8Array.of(1, 2)) },
    ],
  });
  assert.throws(() => findPvhEntry(file, parseElf(file)), bootError(/2-byte value/));
});

test('several notes per segment, other owners and types skipped', () => {
  const notes = concat(
    note('GNU', 3, new Uint8Array(20)),
    note('Xen', 8, ascii('generic\0')), // XEN_ELFNOTE_LOADER
    note('Xenx', XEN_ELFNOTE_PHYS32_ENTRY, u32le(0xdead)),
    note('', 0, new Uint8Array(0)),
    xenEntryNote(0x100040),
  );
  const file = buildElf({
    cls: 32,
    segments: [{ type: PT_LOAD, paddr: 0x100000, data: code(128) }, { type: PT_NOTE, paddr: 0, data: notes }],
  });
  assert.equal(findPvhEntry(file, parseElf(file)), 0x100040);
});

test('XEN_ELFNOTE_GUEST_OS: the kernel says what it is (Linux says "linux"); absent, nothing', () => {
  const withOs = buildElf({
    cls: 64,
    segments: [{ type: PT_LOAD, paddr: 0x100000, data: code(128) }, { type: PT_NOTE, paddr: 0, data: concat(note('Xen', XEN_ELFNOTE_GUEST_OS, ascii('linux\0')), xenEntryNote(0x100000)) }],
  });
  assert.equal(findGuestOs(withOs, parseElf(withOs)), 'linux');
  assert.equal(loadPvhKernel(withOs, RAM).guestOs, 'linux');
  // Not NUL-terminated: the whole value.
  const unterminated = buildElf({ cls: 32, segments: [{ type: PT_LOAD, paddr: 0x100000, data: code(64) }, { type: PT_NOTE, paddr: 0, data: concat(note('Xen', XEN_ELFNOTE_GUEST_OS, ascii('Mini-OS')), xenEntryNote(0x100000)) }] });
  assert.equal(findGuestOs(unterminated, parseElf(unterminated)), 'Mini-OS');
  assert.equal(loadPvhKernel(simpleKernel(64), RAM).guestOs, undefined);
});

test('8-aligned note segment (GNU property style) is parsed with 8-byte padding', () => {
  const notes = concat(note('GNU', 5, new Uint8Array(12), 8), note('Xen', XEN_ELFNOTE_PHYS32_ENTRY, u32le(0x100050), 8));
  const file = buildElf({
    cls: 64,
    segments: [{ type: PT_LOAD, paddr: 0x100000, data: code(128) }, { type: PT_NOTE, paddr: 0, data: notes, align: 8 }],
  });
  assert.equal(findPvhEntry(file, parseElf(file)), 0x100050);
});

test('missing note', () => {
  const file = buildElf({ cls: 64, segments: [{ type: PT_LOAD, paddr: 0x100000, data: code(64) }] });
  assert.equal(findPvhEntry(file, parseElf(file)), undefined);
  assert.throws(() => loadPvhKernel(file, RAM), bootError(/^kernel has no PVH entry point \(no XEN_ELFNOTE_PHYS32_ENTRY note\)$/));
});

test('note running past its segment', () => {
  const bad = xenEntryNote(0x100000);
  new DataView(bad.buffer).setUint32(4, 64, true); // descsz
  const file = buildElf({ cls: 64, segments: [{ type: PT_LOAD, paddr: 0x100000, data: code(64) }, { type: PT_NOTE, paddr: 0, data: bad }] });
  assert.throws(() => findPvhEntry(file, parseElf(file)), bootError(/runs past its end/));
});

test('bad magic, big-endian, wrong machine', () => {
  assert.throws(() => parseElf(ascii('#!/bin/sh\necho hi\n')), bootError(/^kernel is not an ELF file \(bad magic\)$/));
  assert.throws(() => parseElf(new Uint8Array(0)), bootError(/bad magic/));
  const be = simpleKernel(64);
  be[5] = 2;
  assert.throws(() => parseElf(be), bootError(/big-endian/));
  const arm = buildElf({ cls: 32, machine: 40, segments: [] });
  assert.throws(() => parseElf(arm), bootError(/machine 40, not x86/));
  const aarch64 = buildElf({ cls: 64, machine: 183, segments: [] });
  assert.throws(() => parseElf(aarch64), bootError(/machine 183/));
});

test('ELF32 with EM_X86_64 (x32 format) is accepted', () => {
  const file = simpleKernel(32, { machine: EM_X86_64 });
  const image = parseElf(file);
  assert.equal(image.class, 32);
  assert.equal(image.machine, EM_X86_64);
  assert.equal(loadPvhKernel(file, RAM).entry, 0x100010);
});

test('truncated headers', () => {
  const file = simpleKernel(64);
  assert.throws(() => parseElf(file.subarray(0, 40)), bootError(/truncated: the 64-byte ELF header/));
  // Header intact, second program header cut off.
  assert.throws(() => parseElf(file.subarray(0, 64 + 56 + 10)), bootError(/^kernel ELF is truncated: program header 1 lies past the end of the file$/));
  // Segment data cut off.
  assert.throws(() => parseElf(file.subarray(0, 64 + 2 * 56 + 20)), bootError(/truncated: segment 0/));
  const withSecs = buildElf({
    cls: 32,
    segments: [{ type: PT_LOAD, paddr: 0x100000, data: code(16) }],
    sections: [{ name: '.note', type: SHT_NOTE, data: xenEntryNote(0x100000) }],
  });
  assert.throws(() => parseElf(withSecs.subarray(0, withSecs.length - 5)), bootError(/section header 2 lies past the end/));
  // A huge phnum pointing past the end.
  const huge = simpleKernel(64);
  new DataView(huge.buffer).setUint16(Elf64Ehdr.offsets.e_phnum, 1000, true);
  const firstMissing = Math.floor((huge.length - 64 - 56) / 56) + 1;
  assert.throws(() => parseElf(huge), bootError(new RegExp(`program header ${firstMissing} lies past the end`)));
  // Offsets beyond 2^53.
  const far = simpleKernel(64);
  new DataView(far.buffer).setBigUint64(Elf64Ehdr.offsets.e_phoff, 1n << 60n, true);
  assert.throws(() => parseElf(far), bootError(/program header offset .* too large/));
});

test('corrupted and truncated files only ever throw BootError', () => {
  const files = [
    simpleKernel(32),
    simpleKernel(64),
    buildElf({
      cls: 64,
      segments: [{ type: PT_LOAD, paddr: 0x100000, data: code(32) }],
      sections: [{ name: '.note.Xen', type: SHT_NOTE, data: xenEntryNote(0x100000) }],
    }),
  ];
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const attempt = (f: Uint8Array) => {
    try {
      loadPvhKernel(f, RAM);
    } catch (e) {
      if (!(e instanceof BootError)) throw e;
    }
  };
  for (const base of files) {
    for (let len = 0; len <= base.length; len++) attempt(base.slice(0, len));
    for (let i = 0; i < 3000; i++) {
      const f = base.slice();
      const flips = 1 + Math.floor(rand() * 4);
      for (let k = 0; k < flips; k++) f[Math.floor(rand() * f.length)] = Math.floor(rand() * 256);
      attempt(f);
    }
  }
});

test('segment outside RAM, straddling two RAM ranges, filesz > memsz, overlap', () => {
  const ram = [{ start: 0, end: 0xa0000 }, { start: 0x100000, end: 0x200000 }];
  const outside = simpleKernel(64);
  assert.throws(() => loadPvhKernel(outside, [{ start: 0, end: 0x100800 }]),
    bootError(/^kernel segment at 0x100000 \(4096 bytes\) lies outside guest RAM$/));
  const straddle = buildElf({
    cls: 64,
    segments: [{ type: PT_LOAD, paddr: 0x9f000, data: code(0x2000) }, { type: PT_NOTE, paddr: 0, data: xenEntryNote(0x9f000) }],
  });
  assert.throws(() => loadPvhKernel(straddle, ram), bootError(/lies outside guest RAM/));
  // End is exclusive: a segment ending exactly at the end of RAM fits.
  const exact = buildElf({
    cls: 64,
    segments: [{ type: PT_LOAD, paddr: 0x1ff000, data: code(0x1000) }, { type: PT_NOTE, paddr: 0, data: xenEntryNote(0x1ff000) }],
  });
  assert.equal(loadPvhKernel(exact, ram).highest, 0x200000);

  const fileBig = simpleKernel(32);
  new DataView(fileBig.buffer).setUint32(Elf32Ehdr.size + Elf32Phdr.offsets.p_memsz, 0x100, true);
  assert.throws(() => loadPvhKernel(fileBig, RAM), bootError(/more file bytes \(512\) than memory bytes \(256\)/));

  const overlap = buildElf({
    cls: 64,
    segments: [
      { type: PT_LOAD, paddr: 0x100000, data: code(0x100), memsz: 0x2000 },
      { type: PT_LOAD, paddr: 0x101000, data: code(0x100) },
      { type: PT_NOTE, paddr: 0, data: xenEntryNote(0x100000) },
    ],
  });
  assert.throws(() => loadPvhKernel(overlap, RAM), bootError(/segments 0 .* and 1 .* overlap/));
});

test('entry outside every loaded segment, and ET_REL', () => {
  const stray = buildElf({
    cls: 64,
    segments: [{ type: PT_LOAD, paddr: 0x100000, data: code(16) }, { type: PT_NOTE, paddr: 0, data: xenEntryNote(0x300000) }],
  });
  assert.throws(() => loadPvhKernel(stray, RAM), bootError(/entry point 0x300000 is not inside any loaded segment/));
  const rel = simpleKernel(64, { type: 1 });
  assert.throws(() => loadPvhKernel(rel, RAM), bootError(/not an executable/));
});

test('high-half virtual addresses are accepted (only physical addresses are used)', () => {
  const file = buildElf({
    cls: 64,
    segments: [
      { type: PT_LOAD, paddr: 0x1000000, vaddr: 0, data: code(64) },
      { type: PT_NOTE, paddr: 0, data: xenEntryNote(0x1000000) },
    ],
  });
  const ph = Elf64Ehdr.size + Elf64Phdr.offsets.p_vaddr;
  new DataView(file.buffer).setBigUint64(ph, 0xffffffff81000000n, true);
  const image = parseElf(file);
  assert.equal(image.segments[0].vaddr, Number(0xffffffff81000000n));
  assert.equal(loadPvhKernel(file, RAM).chunks[0].gpa, 0x1000000);
});

// --- real toolchain output ----------------------------------------------------

function hasTool(name: string): boolean {
  try {
    execFileSync(name, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const haveGcc = hasTool('gcc') && hasTool('ld') && hasTool('objcopy');

test('parses kernels built by gcc/ld/objcopy', { skip: haveGcc ? false : 'gcc, ld or objcopy not found' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'xenkvm-elf-'));
  try {
    const src = join(dir, 'k.S');
    writeFileSync(src, [
      '.section .note.Xen, "a", @note',
      '.balign 4',
      '.long 4, 4, 18',
      '.asciz "Xen"',
      '.balign 4',
      '.long _start',
      '.section .note.other, "", @note', // non-allocated: section headers only
      '.balign 4',
      '.long 4, 4, 18',
      '.asciz "Xen"',
      '.long _start + 2',
      '.text',
      '.globl _start',
      '_start: hlt',
      'jmp _start',
      '.bss',
      '.skip 8192',
      '',
    ].join('\n'));
    writeFileSync(join(dir, 'k.ld'), [
      'ENTRY(_start)',
      'SECTIONS {',
      '  . = 0x100000;',
      '  .text : { *(.text) }',
      '  .note.Xen : { *(.note.Xen) }',
      '  .bss : { *(.bss) }',
      '}',
      '',
    ].join('\n'));
    const run = (cmd: string, args: string[]) => execFileSync(cmd, args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
    run('gcc', ['-m64', '-c', src, '-o', 'k64.o']);
    run('ld', ['-m', 'elf_x86_64', '-T', 'k.ld', '-o', 'k64', 'k64.o']);
    run('gcc', ['-m32', '-c', src, '-o', 'k32.o']);
    run('ld', ['-m', 'elf_i386', '-T', 'k.ld', '-o', 'k32', 'k32.o']);
    run('objcopy', ['-O', 'elf32-x86-64', 'k64', 'kx32']);
    run('objcopy', ['--remove-section', '.note.Xen', 'k64', 'k64-secnote']);

    const expect = [
      ['k64', 64, EM_X86_64],
      ['k32', 32, EM_386],
      ['kx32', 32, EM_X86_64],
    ] as const;
    for (const [name, cls, machine] of expect) {
      const file = new Uint8Array(readFileSync(join(dir, name)));
      const image = parseElf(file);
      assert.equal(image.class, cls, name);
      assert.equal(image.machine, machine, name);
      assert.equal(image.entry, 0x100000, name);
      assert.ok(image.segments.some((s) => s.type === PT_NOTE), `${name} has a PT_NOTE`);
      assert.ok(image.sections.some((s) => s.name === '.note.Xen' && s.type === SHT_NOTE), name);
      const k = loadPvhKernel(file, RAM);
      assert.equal(k.entry, 0x100000, name);
      assert.ok(k.chunks.some((c) => c.gpa === 0x100000 && c.bytes[0] === 0xf4), `${name} loads _start`);
      assert.ok(k.chunks.reduce((n, c) => n + c.zeroFill, 0) >= 8192, `${name} zero-fills .bss`);
    }
    // With the allocated note gone, the entry comes from the section-only note.
    const secOnly = new Uint8Array(readFileSync(join(dir, 'k64-secnote')));
    assert.equal(findPvhEntry(secOnly, parseElf(secOnly)), 0x100002);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

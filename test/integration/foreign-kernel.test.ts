// A PVH kernel that owes nothing to the guest kit: built here by gcc and ld
// the way Linux links vmlinux (virtual addresses high, physical at 2 MiB), its
// PVH note only in the section headers (not in a PT_NOTE segment).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { describe, requireKvm, xenkvm } from '../guest-runner.js';

requireKvm();

const source = `
  .set KVIRT, 0xffffffff80000000
  .section .text, "ax"
  .code32
  .globl _start
_start:
  mov $0x9f000, %esp                /* the PVH ABI leaves the stack to the kernel */
  mov $0xe9, %dx
  cmpl $0x336ec578, (%ebx)          /* hvm_start_info magic */
  jne fail
  cmpl $1, 4(%ebx)                  /* version */
  jb fail
  mov $(hello - KVIRT), %esi
  call puts
  mov 24(%ebx), %esi                /* cmdline_paddr */
  call puts
  mov $10, %al
  out %al, %dx
  mov $0xcf9, %dx                   /* reset through the FADT's reset register */
  mov $6, %al
  out %al, %dx
fail:
  ud2
puts:
  lodsb
  test %al, %al
  jz 1f
  out %al, %dx
  jmp puts
1: ret
hello: .asciz "FOREIGN-PVH cmdline="

  .section .note.Xen, ""              /* not allocated: no PT_NOTE segment */
  .balign 4
  .long 4, 4, 18                     /* namesz, descsz, XEN_ELFNOTE_PHYS32_ENTRY */
  .asciz "Xen"
  .long _start - KVIRT
`;

const script = `
ENTRY(_start)
SECTIONS {
  . = 0xffffffff80200000;
  .text : AT(0x200000) { *(.text) }
  .note.Xen 0 : { *(.note.Xen) }
}
`;

/** Assembles the kernel and links it with `ldScript` in a directory removed after the test; the ELF's path. */
function buildKernel(t: TestContext, ldScript: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'xenkvm-foreign-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'k.S'), source);
  writeFileSync(join(dir, 'k.ld'), ldScript);
  execFileSync('gcc', ['-c', '-o', join(dir, 'k.o'), join(dir, 'k.S')]);
  execFileSync('ld', ['-m', 'elf_x86_64', '-T', join(dir, 'k.ld'), '-o', join(dir, 'k.elf'), join(dir, 'k.o')]);
  return join(dir, 'k.elf');
}

test('a kernel loaded at physical address 0 boots, start_info following its image as Xen\'s domain builder places it', async (t) => {
  // 16 KiB of image from address 0: over the pages start_info used to take.
  const atZero = script.replace('0xffffffff80200000', '0xffffffff80000000').replace('AT(0x200000) { *(.text) }', 'AT(0x0) { *(.text) . = 0x4000; }');
  const r = await xenkvm(['run', '--kernel', buildKernel(t, atZero), '--cmdline', 'at zero']);
  assert.equal(r.status, 2, describe(r));
  assert.equal(r.stdout, 'FOREIGN-PVH cmdline=at zero\n', describe(r));
});

test('a kernel segment outside guest RAM is refused with one line', async (t) => {
  const r = await xenkvm(['run', '--kernel', buildKernel(t, script.replace('AT(0x200000)', 'AT(0xa0000)'))]);
  assert.equal(r.status, 1, describe(r));
  assert.match(r.stderr, /^xenkvm: kernel segment at 0xa0000 .* lies outside guest RAM\n$/);
});

test('boots a PVH kernel built outside the kit, with virtual addresses high and the note only in section headers', async (t) => {
  const kernel = buildKernel(t, script);
  const phdrs = execFileSync('readelf', ['-lW', kernel], { encoding: 'utf8' });
  assert.doesNotMatch(phdrs, /\bNOTE\b/, 'the test kernel must not have a PT_NOTE segment');
  assert.match(phdrs, /LOAD\s+\S+\s+0xffffffff80200000\s+0x0*200000/, phdrs);

  const r = await xenkvm(['run', '--kernel', kernel, '--cmdline', 'root=/dev/xvda ro', '--vcpus', '2']);
  assert.equal(r.status, 2, describe(r));
  assert.equal(r.stdout, 'FOREIGN-PVH cmdline=root=/dev/xvda ro\n', describe(r));
});

// Where each boot protocol puts the kernel, the initrd and what the boot vCPU is handed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bzImage } from '../boot/fake-bzimage.js';
import { BZIMAGE_BOOT_PARAMS, BZIMAGE_CMDLINE, planBoot } from './boot-plan.js';
import { ConfigError } from './config-error.js';
import { guestMemmap, MiB } from './layout.js';

test('a bzImage boots by HVM direct boot: kernel at 1 MiB, boot_params and the command line in low memory, 32-bit entry with %esi', () => {
  const memmap = guestMemmap(64 * MiB);
  const initrd = new Uint8Array(3 * MiB + 5).fill(7);
  const plan = planBoot(bzImage({ initSize: 16 * MiB }), 'console=hvc0 quiet', memmap, initrd);
  assert.equal(plan.protocol, 'hvm');
  assert.equal(plan.guestOs, 'linux');
  assert.deepEqual(plan.chunks.map((c) => [c.gpa, c.bytes.length, c.zeroFill]), [[0x100000, 5000, 0]]);
  assert.equal(plan.initrd?.paddr, 64 * MiB - 3 * MiB - 4096, 'as high as RAM allows, page-aligned');
  assert.equal(plan.state.regs.rip, 0x100000n);
  assert.equal(plan.state.regs.rsi, BigInt(BZIMAGE_BOOT_PARAMS));
  assert.equal(plan.state.regs.rbx, 0n);
  assert.equal(plan.state.sregs.cs?.selector, 0x10, '__BOOT_CS');
  assert.equal(plan.state.sregs.ds?.selector, 0x18, '__BOOT_DS');
  const [params, cmdline] = plan.bootData(0xe0000);
  assert.equal(params.gpa, BZIMAGE_BOOT_PARAMS);
  const v = new DataView(params.bytes.buffer);
  assert.equal(v.getUint32(0x228, true), BZIMAGE_CMDLINE);
  assert.equal(v.getUint32(0x218, true), plan.initrd?.paddr);
  assert.equal(v.getUint32(0x21c, true), initrd.length);
  assert.equal(params.bytes[0x1e8], memmap.length);
  assert.equal(cmdline.gpa, BZIMAGE_CMDLINE);
  assert.equal(new TextDecoder().decode(cmdline.bytes), 'console=hvc0 quiet\0');
});

test('a bzImage\'s initrd stays below what the kernel allows; no room, or too long a command line, is one clear line', () => {
  const memmap = guestMemmap(256 * MiB);
  const plan = planBoot(bzImage({ initrdMax: 0x7ffffff }), '', memmap, new Uint8Array(MiB));
  assert.equal(plan.initrd?.paddr, 0x8000000 - MiB, 'initrd_addr_max 128 MiB');
  assert.throws(() => planBoot(bzImage({ initSize: 300 * MiB }), '', memmap, undefined), (e) => e instanceof ConfigError && /needs RAM up to 0x12d00000.*--memory/.test(e.message));
  assert.throws(() => planBoot(bzImage({ initSize: 200 * MiB }), '', memmap, new Uint8Array(60 * MiB)), /no room in guest RAM between the kernel .* for the initrd/);
  assert.throws(() => planBoot(bzImage({ cmdlineSize: 10 }), 'console=hvc0 quiet', memmap, undefined), /the command line is 18 bytes; this kernel takes at most 10/);
  assert.throws(() => planBoot(bzImage(), 'a\0b', memmap, undefined), /NUL/);
});

test('anything else is an ELF for the PVH entry, whose refusal is the ELF loader\'s', () => {
  assert.throws(() => planBoot(new Uint8Array(4096), '', guestMemmap(64 * MiB), undefined), /ELF/);
});

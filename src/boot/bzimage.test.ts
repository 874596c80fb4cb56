// The bzImage parser and boot_params, against a made-up image (fake-bzimage.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeBootParams, isBzImage, parseBzImage } from './bzimage.js';
import { bzImage } from './fake-bzimage.js';

test('parseBzImage: the protected-mode part after the setup sectors, what it needs, and its header', () => {
  const file = bzImage();
  assert.ok(isBzImage(file));
  const image = parseBzImage(file);
  assert.equal(image.version, 0x020f);
  assert.equal(image.kernel.length, 5000);
  assert.equal(image.kernel.byteOffset, 4 * 512);
  assert.ok(image.kernel.every((b) => b === 0xcc));
  assert.equal(image.initSize, 0x200000);
  assert.equal(image.initrdEnd, 0x80000000);
  assert.equal(image.cmdlineMax, 2048);
  assert.equal(image.header.length, 0x26c - 0x1f1);
  assert.equal(parseBzImage(bzImage({ setupSects: 0 })).kernel.byteOffset, 5 * 512, '0 setup sectors means 4');
  assert.equal(parseBzImage(bzImage({ version: 0x0206 })).initSize, 15000, 'before 2.10: three times the compressed size');
});

test('parseBzImage refuses what is not a bzImage it can boot, in one line each', () => {
  assert.equal(isBzImage(new Uint8Array(100)), false);
  assert.throws(() => parseBzImage(new Uint8Array(1024)), /not a bzImage/);
  assert.throws(() => parseBzImage(bzImage({ version: 0x0204 })), /boot protocol 2\.4 is too old/);
  assert.throws(() => parseBzImage(bzImage({ loadflags: 0 })), /zImage, not a bzImage/);
  const truncated = bzImage({ setupSects: 3 }).subarray(0, 4 * 512);
  assert.throws(() => parseBzImage(truncated), /no protected-mode kernel/);
});

test('encodeBootParams: the header copied to 0x1f1, the loader\'s fields, the RSDP and the memory map', () => {
  const image = parseBzImage(bzImage());
  const memmap = [{ addr: 0, size: 0xa0000, type: 1 }, { addr: 0x100000, size: 0x1f00000, type: 1 }, { addr: 0xfec00000, size: 0x1000, type: 2 }];
  const bp = encodeBootParams(image, { cmdlinePaddr: 0x8000, initrd: { paddr: 0x1e00000, size: 12345 }, rsdpPaddr: 0xe0000, memmap });
  const v = new DataView(bp.buffer);
  assert.equal(bp.length, 4096);
  assert.equal(v.getUint32(0x202, true), 0x53726448, 'the header is there');
  assert.equal(bp[0x1ef], 0, 'sentinel 0: the loader zeroed the page');
  assert.equal(v.getUint16(0x1fa, true), 0xffff, 'vid_mode normal');
  assert.equal(bp[0x210], 0xff, 'type_of_loader: undefined');
  assert.equal(bp[0x211] & 1, 1, 'LOADED_HIGH kept');
  assert.equal(v.getUint32(0x214, true), 0x100000);
  assert.equal(v.getUint32(0x218, true), 0x1e00000);
  assert.equal(v.getUint32(0x21c, true), 12345);
  assert.equal(v.getUint32(0x228, true), 0x8000);
  assert.equal(v.getUint32(0x23c, true), 0, 'hardware_subarch: a PC');
  assert.equal(v.getBigUint64(0x070, true), 0xe0000n, 'acpi_rsdp_addr');
  assert.equal(bp[0x1e8], 3);
  for (const [i, e] of memmap.entries()) {
    assert.equal(v.getBigUint64(0x2d0 + 20 * i, true), BigInt(e.addr));
    assert.equal(v.getBigUint64(0x2d0 + 20 * i + 8, true), BigInt(e.size));
    assert.equal(v.getUint32(0x2d0 + 20 * i + 16, true), e.type);
  }
  const old = encodeBootParams(parseBzImage(bzImage({ version: 0x020a })), { cmdlinePaddr: 0x8000, rsdpPaddr: 0xe0000, memmap });
  assert.equal(new DataView(old.buffer).getBigUint64(0x070, true), 0n, 'no acpi_rsdp_addr before 2.14');
  assert.equal(new DataView(old.buffer).getUint32(0x218, true), 0, 'no initrd');
  assert.throws(() => encodeBootParams(image, { cmdlinePaddr: 0x8000, rsdpPaddr: 0, memmap: Array(129).fill(memmap[0]) }), /129 entries/);
});

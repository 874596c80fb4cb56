// For tests: a bzImage whose setup header is written field by field from the
// boot protocol's table (not through bzimage.ts's offsets), its protected-mode
// part filled with 0xcc.

/** A bzImage of `setupSects` setup sectors and a `kernelBytes`-byte protected-mode part. */
export function bzImage(o: { version?: number; setupSects?: number; kernelBytes?: number; loadflags?: number; initSize?: number; initrdMax?: number; cmdlineSize?: number } = {}) {
  const setupSects = o.setupSects ?? 3;
  const sectors = setupSects || 4;
  const file = new Uint8Array((sectors + 1) * 512 + (o.kernelBytes ?? 5000));
  const v = new DataView(file.buffer);
  v.setUint8(0x1f1, setupSects);
  v.setUint16(0x1fe, 0xaa55, true);
  v.setUint8(0x200, 0xeb); // jmp short: the header ends at 0x202 + 0x6a = 0x26c
  v.setUint8(0x201, 0x6a);
  v.setUint32(0x202, 0x53726448, true); // "HdrS"
  v.setUint16(0x206, o.version ?? 0x020f, true);
  v.setUint8(0x211, o.loadflags ?? 0x01);
  v.setUint32(0x214, 0x100000, true);
  v.setUint32(0x22c, o.initrdMax ?? 0x7fffffff, true);
  v.setUint32(0x238, o.cmdlineSize ?? 2048, true);
  v.setUint32(0x260, o.initSize ?? 0x200000, true);
  file.fill(0xcc, (sectors + 1) * 512);
  return file;
}

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CONSOLEIO } from './abi/xen.js';
import { XEN_ERRNO } from './abi/errno.js';
import { CONSOLEIO_WRITE_MAX, consoleReadOps, consoleWriteOps } from './console-io.js';
import { FakeGuest } from './fake-guest.js';
import { XenError } from './errors.js';
import { GuestFaultError } from '../memory/guest-virtual.js';

const BASE = 0x10000n;

function setup(size = 0x20000) {
  const guest = new FakeGuest(BASE, size);
  const ctx = { vcpu: 0, abi: 'native' as const, guest: guest as never };
  const written: number[] = [];
  const truncated: number[] = [];
  let queued = [...new TextEncoder().encode('typed')];
  const d = {
    output: { write: (b: Uint8Array) => void written.push(...b), truncated: (n: number) => void truncated.push(n) },
    input: { peek: (max: number) => Uint8Array.from(queued.slice(0, max)), consume: (n: number) => void (queued = queued.slice(n)) },
  };
  const write = consoleWriteOps(d.output).handlers.get(CONSOLEIO.write)!;
  const read = consoleReadOps(d.input).handlers.get(CONSOLEIO.read)!;
  return { guest, ctx, write: (args: bigint[]) => write(ctx, args), read: (args: bigint[]) => read(ctx, args), written, truncated, queued: () => queued };
}

test('CONSOLEIO_write copies the guest buffer out and returns 0; a write past 64 KiB is cut there', () => {
  const s = setup();
  s.guest.bytes.set(new TextEncoder().encode('hello, console'), 0);
  assert.equal(s.write([BigInt(CONSOLEIO.write), 14n, BASE]), 0);
  assert.equal(new TextDecoder().decode(Uint8Array.from(s.written)), 'hello, console');
  s.written.length = 0;
  assert.equal(s.write([BigInt(CONSOLEIO.write), BigInt(CONSOLEIO_WRITE_MAX + 100), BASE]), 0);
  assert.equal(s.written.length, CONSOLEIO_WRITE_MAX);
  assert.deepEqual(s.truncated, [CONSOLEIO_WRITE_MAX + 100]);
  assert.throws(() => s.write([BigInt(CONSOLEIO.write), 16n, 0x1000n]), GuestFaultError);
});

test('CONSOLEIO_read returns what is queued, loses nothing to a bad buffer, and refuses counts from 2^31', () => {
  const s = setup();
  assert.throws(() => s.read([BigInt(CONSOLEIO.read), 3n, 0x1000n]), GuestFaultError);
  assert.equal(s.queued().length, 5, 'still queued after the fault');
  assert.equal(s.read([BigInt(CONSOLEIO.read), 3n, BASE]), 3);
  assert.equal(new TextDecoder().decode(s.guest.bytes.subarray(0, 3)), 'typ');
  assert.equal(s.read([BigInt(CONSOLEIO.read), 100n, BASE]), 2);
  assert.equal(s.read([BigInt(CONSOLEIO.read), 100n, BASE]), 0);
  assert.throws(() => s.read([BigInt(CONSOLEIO.read), 0x80000000n, BASE]), (e: XenError) => e.errno === XEN_ERRNO.E2BIG);
});

// The machine in-process: stopping and pausing vCPUs from outside, overlay
// pages at guest-chosen frames, and teardown that leaves nothing behind.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { test } from 'node:test';
import { Machine, type MachineConfig } from '../../src/machine/machine.js';
import { guest, requireKvm } from '../guest-runner.js';

requireKvm();

/** A machine whose console is collected; `until` resolves when the console shows the text. */
function machine(config: Partial<MachineConfig> & { kernel: string }) {
  let console = '';
  const waiters: { text: string; resolve: () => void }[] = [];
  const onOutput: ((text: string) => void)[] = [];
  const m = Machine.create({
    cmdline: '',
    memoryMiB: 64,
    vcpus: 1,
    logLevel: 'silent',
    ...config,
    output: (bytes) => {
      console += Buffer.from(bytes).toString('latin1');
      for (const f of onOutput) f(console);
      for (const w of waiters.filter((w) => console.includes(w.text))) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    },
  });
  return {
    m,
    console: () => console,
    onOutput: (f: (text: string) => void) => onOutput.push(f),
    until: (text: string) => new Promise<void>((resolve) => (console.includes(text) ? resolve() : waiters.push({ text, resolve }))),
  };
}

for (const action of ['halt', 'spin']) {
  test(`stop() promptly ends a run whose boot vCPU is in a ${action} loop and whose AP waits for SIPI`, async () => {
    const { m, until } = machine({ kernel: guest('power'), cmdline: `action=${action}`, vcpus: 2 });
    const outcome = m.run();
    await until(`KIT-POWER action=${action}`);
    const stoppedAt = Date.now();
    m.stop();
    const result = await outcome;
    assert.equal(result.reason, 'stopped');
    assert.equal(result.status, 5);
    assert.ok(Date.now() - stoppedAt < 2000, `took ${Date.now() - stoppedAt} ms`);
  });
}

test('an MSI injected by the VMM reaches the guest handler of its vector', async () => {
  const { m, until, console } = machine({ kernel: guest('msi') });
  const outcome = m.run();
  await until('KIT-MSI ready cpu=0 vector=0x52');
  assert.throws(() => m.signalMsi(0, 8), /not 16–255/);
  assert.equal(m.signalMsi(0, 0x52), true);
  assert.equal((await outcome).reason, 'poweroff');
  assert.match(console(), /^KIT-CASE msi-delivered ok$/m);
});

test('pause() holds every vCPU out of KVM_RUN and resume() lets them go on', async () => {
  const { m, until } = machine({ kernel: guest('power'), cmdline: 'action=halt', vcpus: 2 });
  const outcome = m.run();
  await until('KIT-POWER action=halt');
  await m.pause();
  m.resume();
  await m.pause();
  m.stop();
  assert.equal((await outcome).reason, 'stopped');
});

test('an overlay page appears at its frame, follows a move, and RAM returns where it was', async () => {
  const magic = Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i);
  const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

  // Mapped at frame 0x800 (in RAM), then moved to 0x9000 (above RAM): the guest finds it there and writes through it.
  const moved = machine({ kernel: guest('overlay'), cmdline: 'gfn=0x9000 value=0x12345678' });
  moved.m.memoryMap.mapOverlay(0, 0x800);
  moved.m.memoryMap.mapOverlay(0, 0x9000);
  assert.equal(moved.m.memoryMap.overlayFrame(0), 0x9000);
  assert.equal(moved.m.memoryMap.layout.filter((s) => s.host === moved.m.memory.overlays.hostAddress).length, 1, 'exactly one mapping of overlay page 0');
  moved.m.memory.overlayPage(0).set(magic);
  let seenByHost: number | undefined;
  moved.onOutput((text) => {
    if (seenByHost === undefined && text.includes('KIT-CASE overlay-write')) {
      seenByHost = new DataView(moved.m.memory.overlayPage(0).buffer, moved.m.memory.overlayPage(0).byteOffset).getUint32(16, true);
    }
  });
  const r1 = await moved.m.run();
  assert.equal(r1.reason, 'poweroff', moved.console());
  assert.match(moved.console(), new RegExp(`^KIT-OVERLAY ${hex(magic)}$`, 'm'));
  assert.match(moved.console(), /^KIT-CASE overlay-write ok$/m);
  assert.equal(seenByHost, 0x12345678, 'the guest write landed in the overlay page itself');

  // The frame it left is RAM again, with the RAM's own content.
  const left = machine({ kernel: guest('overlay'), cmdline: 'gfn=0x800' });
  left.m.memory.fill(0x800 * 4096, 16, 0x5a);
  left.m.memoryMap.mapOverlay(0, 0x800);
  left.m.memory.overlayPage(0).set(magic);
  left.m.memoryMap.mapOverlay(0, 0x900);
  const r2 = await left.m.run();
  assert.equal(r2.reason, 'poweroff', left.console());
  assert.match(left.console(), new RegExp(`^KIT-OVERLAY ${'5a'.repeat(16)}$`, 'm'));
});

test('teardown leaves no threads, file descriptors or mappings behind', async () => {
  const count = () => ({
    fds: readdirSync('/proc/self/fd').length,
    threads: readdirSync('/proc/self/task').length,
    mappings: readdirSync('/proc/self/map_files').length,
  });
  const once = async () => {
    const { m } = machine({ kernel: guest('smp'), vcpus: 2 });
    assert.equal((await m.run()).reason, 'poweroff');
  };
  await once(); // loads koffi, pino and worker support once
  await new Promise((r) => setTimeout(r, 100));
  const before = count();
  await once();
  await once();
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(count(), before);
  // A machine created but never run releases everything too.
  const { m } = machine({ kernel: guest('smp'), vcpus: 2 });
  m.dispose();
  assert.deepEqual(count(), before);
});

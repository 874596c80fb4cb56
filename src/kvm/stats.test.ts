import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { kvmStatsDesc, kvmStatsHeader } from './abi.js';
import { VcpuStats } from './stats.js';

const NAME_SIZE = 32;
const DESC_OFFSET = 64;
/** Each statistic's place in the data block: two of them apart, with another between. */
const PLACES = { halt_wait_ns: 0, exits: 8, halt_poll_fail_ns: 24 } as const;
const DATA_OFFSET = DESC_OFFSET + Object.keys(PLACES).length * (kvmStatsDesc.size + NAME_SIZE);

/** A file laid out as KVM_GET_STATS_FD's: header, descriptors (each followed by its name), data. */
function statsFile(path: string, values: Record<keyof typeof PLACES, bigint>): void {
  const bytes = new Uint8Array(DATA_OFFSET + 32);
  const names = Object.keys(PLACES) as (keyof typeof PLACES)[];
  bytes.set(kvmStatsHeader.encode({ flags: 0, name_size: NAME_SIZE, num_desc: names.length, id_offset: kvmStatsHeader.size, desc_offset: DESC_OFFSET, data_offset: DATA_OFFSET }), 0);
  const data = new DataView(bytes.buffer, DATA_OFFSET);
  names.forEach((name, i) => {
    const at = DESC_OFFSET + i * (kvmStatsDesc.size + NAME_SIZE);
    bytes.set(kvmStatsDesc.encode({ flags: 0, exponent: 0, size: 1, offset: PLACES[name], bucket_size: 0 }), at);
    bytes.set(new TextEncoder().encode(name), at + kvmStatsDesc.size);
    data.setBigUint64(PLACES[name], values[name], true);
  });
  writeFileSync(path, bytes);
}

test('statistics are read by name, and a sum of several in one read matches them and follows their changes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'xenkvm-stats-'));
  const path = join(dir, 'stats');
  try {
    statsFile(path, { halt_wait_ns: 5n, exits: 7n, halt_poll_fail_ns: 11n });
    const stats = VcpuStats.fromFd(openSync(path, 'r'));
    try {
      assert.equal(stats.read('halt_wait_ns'), 5n);
      assert.equal(stats.read('exits'), 7n);
      assert.equal(stats.read('halt_poll_fail_ns'), 11n);
      assert.equal(stats.read('halt_poll_success_ns'), 0n, 'a statistic this kernel lacks');
      const halted = stats.sum(['halt_wait_ns', 'halt_poll_success_ns', 'halt_poll_fail_ns']);
      assert.equal(halted(), 16n, 'the two present, not the one between them');
      const fd = openSync(path, 'r+');
      try {
        const value = new Uint8Array(8);
        new DataView(value.buffer).setBigUint64(0, 1000n, true);
        writeSync(fd, value, 0, 8, DATA_OFFSET + PLACES.halt_poll_fail_ns);
      } finally {
        closeSync(fd);
      }
      assert.equal(halted(), 1005n, 'read again at every call');
      assert.equal(stats.sum(['no_such_statistic'])(), 0n);
    } finally {
      stats.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

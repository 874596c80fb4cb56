// For unit tests: a MemslotSink standing in for a KVM VM, enforcing KVM's
// rules for KVM_SET_USER_MEMORY_REGION on every call and recording them.
import assert from 'node:assert/strict';
import { PAGE_SIZE } from './guest-memory.js';
import type { MemslotSink } from './memory-map.js';

interface Live {
  gpa: number;
  size: number;
  host: bigint;
}

export class FakeKvm implements MemslotSink {
  readonly live = new Map<number, Live>();
  readonly calls: { slot: number; gpa: number; size: number; host: bigint }[] = [];
  onCall: (() => void) | undefined;

  setUserMemoryRegion(slot: number, gpa: number, size: number, host: bigint): void {
    this.calls.push({ slot, gpa, size, host });
    assert.ok(Number.isInteger(slot) && slot >= 0, `bad slot ${slot}`);
    if (size === 0) {
      assert.ok(this.live.has(slot), `slot ${slot} deleted but not live`);
      this.live.delete(slot);
    } else {
      assert.ok(!this.live.has(slot), `slot ${slot} reused without being deleted first`);
      assert.equal(gpa % PAGE_SIZE, 0);
      assert.equal(size % PAGE_SIZE, 0);
      assert.equal(host % BigInt(PAGE_SIZE), 0n);
      for (const [other, s] of this.live) {
        assert.ok(gpa + size <= s.gpa || s.gpa + s.size <= gpa, `slot ${slot} 0x${gpa.toString(16)}+0x${size.toString(16)} overlaps slot ${other}`);
      }
      this.live.set(slot, { gpa, size, host });
    }
    this.onCall?.();
  }
}

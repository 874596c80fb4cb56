// Runstate accounting for one vCPU, from the VMM's view: time inside KVM_RUN
// is running, except the part KVM spent with the vCPU halted (its halt
// statistics), which is blocked; time held paused by the VMM is runnable;
// time before the vCPU first runs is offline. The record is refreshed at the
// points the vCPU thread sees (hypercalls, pause and resume, registration)
// and written to the guest's runstate area with Xen's update-flag protocol.
import { GuestArea } from '../memory/guest-area.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import type { Abi } from './abi/layout.js';
import { RUNSTATE, vcpuRunstateInfo, XEN_RUNSTATE_UPDATE } from './abi/vcpu.js';
import { VMASST_TYPE } from './abi/xen.js';
import { AreaKind, type DomainState } from './domain-state.js';

export interface RunstateRecord {
  state: number;
  stateEntryTime: bigint;
  /** ns in running, runnable, blocked, offline. */
  time: [bigint, bigint, bigint, bigint];
}

export function recordFromWords(w: readonly bigint[]): RunstateRecord {
  return { state: Number(w[0]), stateEntryTime: w[1], time: [w[2], w[3], w[4], w[5]] };
}

/** The vcpu_runstate_info bytes of a record in one ABI. */
export function encodeRunstate(abi: Abi, r: RunstateRecord, updating = false): Uint8Array {
  const value = { state: r.state, state_entry_time: updating ? r.stateEntryTime | XEN_RUNSTATE_UPDATE : r.stateEntryTime, time: [...r.time] };
  return abi === 'native' ? vcpuRunstateInfo.native.encode(value) : vcpuRunstateInfo.compat.encode(value);
}

/** Writes a record to a registered runstate area: with the update flag set around the write when the guest asked for it. */
export function writeRunstateArea(memory: GuestMemory, state: DomainState, vcpu: number, r: RunstateRecord): void {
  const reg = state.area(vcpu, AreaKind.Runstate);
  if (!reg) return;
  const area = new GuestArea(memory, reg.pieces);
  const def = vcpuRunstateInfo[reg.abi];
  // The flag lives in the top byte of state_entry_time.
  const flagByte = def.offsets.state_entry_time + 7;
  const top = Number(r.stateEntryTime >> 56n) & 0xff;
  const flagged = state.vmAssistEnabled(VMASST_TYPE.runstate_update_flag);
  if (flagged) area.write(flagByte, Uint8Array.of(top | 0x80));
  area.write(0, encodeRunstate(reg.abi, r, flagged));
  if (flagged) area.write(flagByte, Uint8Array.of(top));
}

export class RunstateAccount {
  private record: RunstateRecord = { state: RUNSTATE.offline, stateEntryTime: 0n, time: [0n, 0n, 0n, 0n] };
  private haltedNs = 0n;

  constructor(
    private readonly vcpu: number,
    private readonly state: DomainState,
    private readonly memory: GuestMemory,
    private readonly systemTime: () => bigint,
    /** Cumulative ns KVM has held this vCPU halted. */
    private readonly haltedSoFar: () => bigint,
  ) {
    this.publish();
  }

  get current(): RunstateRecord {
    return this.record;
  }

  /** Folds the time since the last change into the current state, then switches to `next`. */
  transition(next: number): void {
    const now = this.systemTime();
    const elapsed = now > this.record.stateEntryTime ? now - this.record.stateEntryTime : 0n;
    const time = this.record.time;
    if (this.record.state === RUNSTATE.running) {
      const halted = this.haltedSoFar();
      let blocked = halted - this.haltedNs;
      this.haltedNs = halted;
      if (blocked < 0n) blocked = 0n;
      if (blocked > elapsed) blocked = elapsed;
      time[RUNSTATE.running] += elapsed - blocked;
      time[RUNSTATE.blocked] += blocked;
    } else {
      time[this.record.state] += elapsed;
      this.haltedNs = this.haltedSoFar();
    }
    this.record = { state: next, stateEntryTime: this.record.stateEntryTime + elapsed, time };
    this.publish();
  }

  /** Brings the record up to now without changing state. */
  refresh(): void {
    this.transition(this.record.state);
  }

  private publish(): void {
    const r = this.record;
    this.state.setRunstate(this.vcpu, [BigInt(r.state), r.stateEntryTime, ...r.time]);
    writeRunstateArea(this.memory, this.state, this.vcpu, r);
  }
}

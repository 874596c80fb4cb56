// Decodes the exit union of a kvm_run page into a tagged value. Pure: tests
// feed it made-up kvm_run bytes.
import { exitReasonNames, exitReasons, internalErrors, kvmRun, KVM_EXIT_IO_OUT, KVM_EXIT_XEN_HCALL, systemEvents } from './abi.js';

export type KvmExit =
  | { kind: 'io'; direction: 'in' | 'out'; port: number; size: number; count: number; dataOffset: number }
  | { kind: 'mmio'; gpa: number; len: number; isWrite: boolean; data: Uint8Array }
  | { kind: 'hlt' }
  | { kind: 'shutdown' }
  | { kind: 'intr' }
  | { kind: 'irq-window-open' }
  | { kind: 'exception'; vector: number; errorCode: number }
  | { kind: 'system-event'; event: 'shutdown' | 'reset' | 'crash' | 'wakeup' | 'suspend' | 'sev-term' | 'unknown'; type: number; data: bigint[] }
  | { kind: 'fail-entry'; hardwareReason: bigint; cpu: number }
  | { kind: 'internal-error'; suberror: number; description: string; data: bigint[]; instructionBytes?: Uint8Array }
  | { kind: 'rdmsr'; index: number; reason: number }
  | { kind: 'wrmsr'; index: number; data: bigint; reason: number }
  /** A Xen hypercall KVM intercepted (VMCALL/VMMCALL, KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL): its number and six arguments. */
  | { kind: 'xen-hcall'; longMode: boolean; cpl: number; input: bigint; params: bigint[] }
  | { kind: 'unknown'; reason: number; name: string; hardwareReason: bigint };

const internalErrorDescriptions: Record<number, string> = {
  [internalErrors.EMULATION]: 'instruction emulation failed',
  [internalErrors.SIMUL_EX]: 'exception raised while delivering an exception',
  [internalErrors.DELIVERY_EV]: 'event delivery failed',
  [internalErrors.UNEXPECTED_EXIT_REASON]: 'unexpected hardware exit reason',
};

const systemEventNames: Record<number, Extract<KvmExit, { kind: 'system-event' }>['event']> = {
  [systemEvents.SHUTDOWN]: 'shutdown',
  [systemEvents.RESET]: 'reset',
  [systemEvents.CRASH]: 'crash',
  [systemEvents.WAKEUP]: 'wakeup',
  [systemEvents.SUSPEND]: 'suspend',
  [systemEvents.SEV_TERM]: 'sev-term',
};

/** KVM caps ndata at 16 u64 words; a larger value is corrupt and clamped. */
function dataWords(run: DataView, countOffset: number, dataOffset: number): bigint[] {
  const n = Math.min(run.getUint32(countOffset, true), 16);
  return Array.from({ length: n }, (_, i) => run.getBigUint64(dataOffset + 8 * i, true));
}

export function decodeExit(run: DataView): KvmExit {
  const reason = run.getUint32(kvmRun.exit_reason, true);
  switch (reason) {
    case exitReasons.IO:
      return {
        kind: 'io',
        direction: run.getUint8(kvmRun.io.direction) === KVM_EXIT_IO_OUT ? 'out' : 'in',
        size: run.getUint8(kvmRun.io.size),
        port: run.getUint16(kvmRun.io.port, true),
        count: run.getUint32(kvmRun.io.count, true),
        dataOffset: Number(run.getBigUint64(kvmRun.io.data_offset, true)),
      };
    case exitReasons.MMIO: {
      const len = Math.min(run.getUint32(kvmRun.mmio.len, true), 8);
      return {
        kind: 'mmio',
        gpa: Number(run.getBigUint64(kvmRun.mmio.phys_addr, true)),
        len,
        isWrite: run.getUint8(kvmRun.mmio.is_write) !== 0,
        data: new Uint8Array(run.buffer.slice(run.byteOffset + kvmRun.mmio.data, run.byteOffset + kvmRun.mmio.data + len)),
      };
    }
    case exitReasons.HLT:
      return { kind: 'hlt' };
    case exitReasons.SHUTDOWN:
      return { kind: 'shutdown' };
    case exitReasons.INTR:
      return { kind: 'intr' };
    case exitReasons.IRQ_WINDOW_OPEN:
      return { kind: 'irq-window-open' };
    case exitReasons.EXCEPTION:
      return { kind: 'exception', vector: run.getUint32(kvmRun.ex.exception, true), errorCode: run.getUint32(kvmRun.ex.error_code, true) };
    case exitReasons.SYSTEM_EVENT: {
      const type = run.getUint32(kvmRun.system_event.type, true);
      return { kind: 'system-event', type, event: systemEventNames[type] ?? 'unknown', data: dataWords(run, kvmRun.system_event.ndata, kvmRun.system_event.data) };
    }
    case exitReasons.FAIL_ENTRY:
      return {
        kind: 'fail-entry',
        hardwareReason: run.getBigUint64(kvmRun.fail_entry.hardware_entry_failure_reason, true),
        cpu: run.getUint32(kvmRun.fail_entry.cpu, true),
      };
    case exitReasons.INTERNAL_ERROR: {
      const suberror = run.getUint32(kvmRun.internal.suberror, true);
      const exit: KvmExit = {
        kind: 'internal-error',
        suberror,
        description: internalErrorDescriptions[suberror] ?? `internal error ${suberror}`,
        data: dataWords(run, kvmRun.internal.ndata, kvmRun.internal.data),
      };
      const flags = run.getBigUint64(kvmRun.emulation_failure.flags, true);
      if (suberror === internalErrors.EMULATION && exit.data.length >= 2 && (flags & BigInt(internalErrors.EMULATION_FLAG_INSTRUCTION_BYTES)) !== 0n) {
        const size = Math.min(run.getUint8(kvmRun.emulation_failure.insn_size), 15);
        const start = run.byteOffset + kvmRun.emulation_failure.insn_bytes;
        exit.instructionBytes = new Uint8Array(run.buffer.slice(start, start + size));
      }
      return exit;
    }
    case exitReasons.X86_RDMSR:
      return { kind: 'rdmsr', index: run.getUint32(kvmRun.msr.index, true), reason: run.getUint32(kvmRun.msr.reason, true) };
    case exitReasons.X86_WRMSR:
      return {
        kind: 'wrmsr',
        index: run.getUint32(kvmRun.msr.index, true),
        data: run.getBigUint64(kvmRun.msr.data, true),
        reason: run.getUint32(kvmRun.msr.reason, true),
      };
    case exitReasons.XEN: {
      if (run.getUint32(kvmRun.xen.type, true) !== KVM_EXIT_XEN_HCALL) break;
      // Every hypercall Linux makes comes this way: the six words are read one by one, as Array.from
      // with a mapping function cost more than the rest of a null hypercall's exit (nested VM).
      const param = (i: number) => run.getBigUint64(kvmRun.xen.params + 8 * i, true);
      return {
        kind: 'xen-hcall',
        longMode: run.getUint32(kvmRun.xen.longmode, true) !== 0,
        cpl: run.getUint32(kvmRun.xen.cpl, true),
        input: run.getBigUint64(kvmRun.xen.input, true),
        params: [param(0), param(1), param(2), param(3), param(4), param(5)],
      };
    }
  }
  return { kind: 'unknown', reason, name: exitReasonNames[reason] ?? `exit reason ${reason}`, hardwareReason: run.getBigUint64(kvmRun.hw.hardware_exit_reason, true) };
}

const hex = (v: number | bigint) => `0x${v.toString(16)}`;

/** One line describing an exit, for error reports. */
export function describeExit(exit: KvmExit): string {
  switch (exit.kind) {
    case 'io':
      return `I/O ${exit.direction} port ${hex(exit.port)} size ${exit.size} count ${exit.count}`;
    case 'mmio':
      return `MMIO ${exit.isWrite ? 'write' : 'read'} at ${hex(exit.gpa)} length ${exit.len}`;
    case 'internal-error':
      return `KVM internal error: ${exit.description} (suberror ${exit.suberror}${exit.data.length ? `, data ${exit.data.map(hex).join(' ')}` : ''})`;
    case 'fail-entry':
      return `VM entry failed on host CPU ${exit.cpu}: hardware reason ${hex(exit.hardwareReason)}`;
    case 'system-event':
      return `system event ${exit.event} (type ${exit.type})`;
    case 'exception':
      return `exception ${exit.vector} error code ${hex(exit.errorCode)}`;
    case 'rdmsr':
      return `RDMSR ${hex(exit.index)}`;
    case 'wrmsr':
      return `WRMSR ${hex(exit.index)} = ${hex(exit.data)}`;
    case 'unknown':
      return `unhandled exit ${exit.name} (${exit.reason}), hardware reason ${hex(exit.hardwareReason)}`;
    default:
      return exit.kind;
  }
}

// MSIs into the in-kernel LAPICs, from any thread.
import type { Vm } from '../kvm/vm.js';
import type { UpcallHost } from '../xen/evtchn/upcall.js';
import type { CallbackLineRaiser } from './callback-lines.js';
import { LAPIC_ADDRESS, pciIntxGsi } from './layout.js';

/** A fixed, edge-triggered MSI with `vector` at the LAPIC whose id is `apicId` (physical destination); false if no LAPIC took it. */
export function signalFixedMsi(vm: Vm, apicId: number, vector: number): boolean {
  if (!Number.isInteger(vector) || vector < 16 || vector > 255) throw new RangeError(`MSI vector ${vector} is not 16–255`);
  if (!Number.isInteger(apicId) || apicId < 0 || apicId > 255) throw new RangeError(`APIC id ${apicId} is not 0–255`);
  return vm.signalMsi(LAPIC_ADDRESS + apicId * 4096, vector) > 0;
}

/** Event upcalls from any thread: MSIs through the VM, callback lines, kicks and wake-ups through each vCPU's control block. */
export function upcallHost(vm: Vm, controls: readonly { kick(): void; wake(): void }[], lines: CallbackLineRaiser): UpcallHost {
  return {
    signalMsi: (apicId, vector) => signalFixedMsi(vm, apicId, vector),
    kick: (vcpu) => controls[vcpu].kick(),
    wake: (vcpu) => controls[vcpu].wake(),
    raiseGsi: (gsi) => lines.raise(gsi),
    intxGsi: pciIntxGsi,
    kvmSend: (port, vcpu) => vm.sendXenEvent(port, vcpu),
  };
}

// What devices may ask of the machine they sit in.

/** Why a machine stopped; each maps to a distinct exit status of `xenkvm run`. */
export type StopReason = 'poweroff' | 'reset' | 'triple-fault' | 'vcpu-error' | 'vmm-error' | 'stopped' | 'crash' | 'suspended';

export interface Platform {
  requestStop(reason: StopReason, message?: string): void;
  consoleOutput(bytes: Uint8Array): void;
  setIrqLevel(irq: number, level: boolean): void;
}

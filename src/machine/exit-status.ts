// Exit statuses of `xenkvm run`, one per way a machine can end (documented in
// docs/exit-status.md).
import type { StopReason } from './devices/platform.js';

export const exitStatus: Record<StopReason, number> = {
  poweroff: 0,
  'vmm-error': 1,
  reset: 2,
  'triple-fault': 3,
  'vcpu-error': 4,
  stopped: 5,
  crash: 6,
  suspended: 7,
};

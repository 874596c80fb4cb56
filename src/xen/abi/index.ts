// Xen's public ABI for x86 guests, 64-bit (native) and 32-bit (compat): the
// one place its numbers and struct layouts live. Structs are exported as
// { native, compat } pairs; pick by the guest's mode.
export * from './layout.js';
export * from './hypercalls.js';
export * from './errno.js';
export * from './xen.js';
export * from './cpuid.js';
export * from './version.js';
export * from './memory.js';
export * from './hvm.js';
export * from './vcpu.js';
export * from './shared-info.js';
export * from './sched.js';
export * from './event-channel.js';
export * from './grant-table.js';
export * from './xenstore.js';
export * from './console.js';
export * from './blkif.js';
export * from './netif.js';
export * from './xenbus.js';
export * from './toolstack.js';

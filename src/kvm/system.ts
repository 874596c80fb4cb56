// The /dev/kvm system file descriptor.
import { existsSync } from 'node:fs';
import { caps, ioctls, KVM_API_VERSION, kvmCpuid2Header, kvmCpuidEntry2, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, xenHvmConfig } from './abi.js';
import { check, EACCES, EINTR, ENOENT, EPERM, errno, libc, O_CLOEXEC, O_RDWR, SystemCallError } from './libc.js';
import { Vm } from './vm.js';

export interface CpuidEntry {
  function: number;
  index: number;
  /** Whether `index` (ECX on input) selects this entry. */
  indexed: boolean;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}

/** Whose rules the CPU follows where vendors differ: AMD's (and Hygon's, its licensee's: SVM) or Intel's (VMX; the other vendors follow Intel). */
export type CpuVendor = 'amd' | 'intel';

/** The vendor named in leaf 0 of a CPUID list (KVM reports the host's); Intel's rules when leaf 0 is missing. */
export function cpuVendor(cpuid: readonly CpuidEntry[]): CpuVendor {
  const leaf0 = cpuid.find((e) => e.function === 0);
  if (!leaf0) return 'intel';
  const bytes = new Uint8Array(12);
  const view = new DataView(bytes.buffer);
  [leaf0.ebx, leaf0.edx, leaf0.ecx].forEach((r, i) => view.setUint32(i * 4, r >>> 0, true));
  const name = String.fromCharCode(...bytes);
  return name === 'AuthenticAMD' || name === 'HygonGenuine' ? 'amd' : 'intel';
}

export const KVM_DEVICE = '/dev/kvm';

/**
 * Whether this host's KVM is PVM (module kvm_pvm): a KVM for hosts that are themselves guests
 * without hardware virtualization, which runs the guest's kernel under shadow paging. It runs
 * 64-bit guests, but not everything a guest may do (PVM_LIMITS); a vCPU it shuts down keeps its
 * registers, as on Intel.
 */
export function hostKvmIsPvm(): boolean {
  return existsSync('/sys/module/kvm_pvm');
}

/** What a vCPU thread needs to know of the host's KVM. */
export interface HostKvm {
  vendor: CpuVendor;
  /** See hostKvmIsPvm. */
  pvm: boolean;
}

/** What PVM was seen to refuse: the guests xenkvm runs on upstream KVM but not there. */
export const PVM_LIMITS =
  "this host's KVM is PVM (kvm_pvm), which runs only guests that page in long mode (turning paging on in 32-bit mode triple-faults) and raises #UD for int $0x80 from a guest's user mode";

/** /dev/kvm missing, not permitted or unusable: the message says what to do. */
export class KvmUnavailableError extends Error {
  override name = 'KvmUnavailableError';
}

export class Kvm {
  private constructor(readonly fd: number) {}

  static open(path = KVM_DEVICE): Kvm {
    const fd = libc().open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      const e = errno();
      if (e === ENOENT) throw new KvmUnavailableError(`${path} does not exist: this host has no KVM (load the kvm module or run on a machine with virtualization)`);
      if (e === EACCES || e === EPERM) throw new KvmUnavailableError(`${path} is not accessible to this user: add yourself to the kvm group or run as root`);
      throw new KvmUnavailableError(`cannot open ${path}: ${new SystemCallError('open', e).message}`);
    }
    const kvm = new Kvm(fd);
    const version = libc().ioctlInt(fd, ioctls.KVM_GET_API_VERSION, 0);
    if (version !== KVM_API_VERSION) {
      kvm.close();
      throw new KvmUnavailableError(
        version < 0 ? `${path} is not a KVM device` : `${path} speaks KVM API ${version}, xenkvm needs ${KVM_API_VERSION}`,
      );
    }
    return kvm;
  }

  checkExtension(cap: number): number {
    return Math.max(0, libc().ioctlInt(this.fd, ioctls.KVM_CHECK_EXTENSION, cap));
  }

  /** Fails with a clear message unless every capability xenkvm relies on is present. */
  requireExtensions(): void {
    const needed: [number, string][] = [
      [caps.KVM_CAP_IRQCHIP, 'in-kernel irqchip'],
      [caps.KVM_CAP_USER_MEMORY, 'user memory regions'],
      [caps.KVM_CAP_EXT_CPUID, 'CPUID configuration'],
      [caps.KVM_CAP_SIGNAL_MSI, 'MSI injection'],
      [caps.KVM_CAP_IRQFD_RESAMPLE, 'level-triggered irqfds'],
      [caps.KVM_CAP_X86_USER_SPACE_MSR, 'user-space MSR exits'],
      [caps.KVM_CAP_X86_MSR_FILTER, 'MSR filtering'],
      [caps.KVM_CAP_IMMEDIATE_EXIT, 'immediate exit'],
      [caps.KVM_CAP_MP_STATE, 'multiprocessor state'],
    ];
    const missing = needed.filter(([cap]) => this.checkExtension(cap) <= 0).map(([, what]) => what);
    if (missing.length) throw new KvmUnavailableError(`this host's KVM lacks ${missing.join(', ')}; xenkvm needs Linux 5.10 or later`);
  }

  /** KVM_CAP_XEN_HVM: the xenHvmConfig flags of the Xen support KVM has (none where its kernel lacks CONFIG_KVM_XEN). */
  xenSupport(): number {
    return this.checkExtension(caps.KVM_CAP_XEN_HVM);
  }

  /** Whether KVM can hand the guest's Xen hypercalls to the VMM (INTERCEPT_HCALL): not where its kernel lacks CONFIG_KVM_XEN. */
  interceptsXenHypercalls(): boolean {
    return (this.xenSupport() & xenHvmConfig.INTERCEPT_HCALL) !== 0;
  }

  vcpuMmapSize(): number {
    return check('ioctl(KVM_GET_VCPU_MMAP_SIZE)', libc().ioctlInt(this.fd, ioctls.KVM_GET_VCPU_MMAP_SIZE, 0));
  }

  supportedCpuid(): CpuidEntry[] {
    for (let n = 64; n <= 4096; n *= 2) {
      const buf = new Uint8Array(kvmCpuid2Header.size + n * kvmCpuidEntry2.size);
      kvmCpuid2Header.write(new DataView(buf.buffer), 0, { nent: n });
      if (libc().ioctlPtr(this.fd, ioctls.KVM_GET_SUPPORTED_CPUID, buf) < 0) {
        if (errno() === 7 /* E2BIG */) continue;
        throw new SystemCallError('ioctl(KVM_GET_SUPPORTED_CPUID)', errno());
      }
      return decodeCpuid(buf);
    }
    throw new Error('KVM_GET_SUPPORTED_CPUID: more than 4096 entries');
  }

  createVm(): Vm {
    // KVM takes every lock of the process's address space here and gives up with EINTR when a signal
    // arrives meanwhile (a profiler's SIGPROF, say): the request is simply made again.
    for (;;) {
      const fd = libc().ioctlInt(this.fd, ioctls.KVM_CREATE_VM, 0);
      if (fd === -1 && errno() === EINTR) continue;
      return new Vm(check('ioctl(KVM_CREATE_VM)', fd));
    }
  }

  close(): void {
    libc().close(this.fd);
  }
}

export function decodeCpuid(buf: Uint8Array): CpuidEntry[] {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const { nent } = kvmCpuid2Header.read(view, 0);
  return Array.from({ length: nent }, (_, i) => {
    const e = kvmCpuidEntry2.read(view, kvmCpuid2Header.size + i * kvmCpuidEntry2.size);
    return {
      function: e.function,
      index: e.index,
      indexed: (e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) !== 0,
      eax: e.eax,
      ebx: e.ebx,
      ecx: e.ecx,
      edx: e.edx,
    };
  });
}

export function encodeCpuid(entries: CpuidEntry[]): Uint8Array {
  const buf = new Uint8Array(kvmCpuid2Header.size + entries.length * kvmCpuidEntry2.size);
  const view = new DataView(buf.buffer);
  kvmCpuid2Header.write(view, 0, { nent: entries.length });
  entries.forEach((e, i) =>
    kvmCpuidEntry2.write(view, kvmCpuid2Header.size + i * kvmCpuidEntry2.size, {
      function: e.function,
      index: e.index,
      flags: e.indexed ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0,
      eax: e.eax >>> 0,
      ebx: e.ebx >>> 0,
      ecx: e.ecx >>> 0,
      edx: e.edx >>> 0,
    }),
  );
  return buf;
}

/** Kvm.interceptsXenHypercalls() of the host's KVM, opened for the question. */
export function hostKvmInterceptsXenHypercalls(): boolean {
  return withHostKvm((kvm) => kvm.interceptsXenHypercalls());
}

/** Kvm.xenSupport() of the host's KVM (its KVM_CAP_XEN_HVM flags), opened for the question. */
export function hostKvmXenSupport(): number {
  return withHostKvm((kvm) => kvm.xenSupport());
}

function withHostKvm<T>(ask: (kvm: Kvm) => T): T {
  const kvm = Kvm.open();
  try {
    return ask(kvm);
  } finally {
    kvm.close();
  }
}

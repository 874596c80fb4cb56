// A vCPU's binary statistics (KVM_GET_STATS_FD): read without the vCPU's
// mutex, so the VMM can see how long a vCPU has been halted inside KVM_RUN.
import { ioctls, kvmStatsDesc, kvmStatsHeader } from './abi.js';
import { check, libc } from './libc.js';

export class VcpuStats {
  private constructor(
    private readonly fd: number,
    private readonly offsets: ReadonlyMap<string, number>,
  ) {}

  static open(vcpuFd: number): VcpuStats {
    return VcpuStats.fromFd(check('ioctl(KVM_GET_STATS_FD)', libc().ioctlInt(vcpuFd, ioctls.KVM_GET_STATS_FD, 0)));
  }

  /** The statistics behind `fd`, in KVM's binary statistics format (header, descriptors, data); it owns the fd. */
  static fromFd(fd: number): VcpuStats {
    const read = (offset: number, length: number) => {
      const buf = new Uint8Array(length);
      if (libc().pread(fd, buf, length, offset) !== length) throw new Error('short read of KVM statistics');
      return buf;
    };
    const h = kvmStatsHeader.decode(read(0, kvmStatsHeader.size));
    const stride = kvmStatsDesc.size + h.name_size;
    const descs = read(h.desc_offset, h.num_desc * stride);
    const offsets = new Map<string, number>();
    for (let i = 0; i < h.num_desc; i++) {
      const d = kvmStatsDesc.decode(descs.subarray(i * stride));
      const nameBytes = descs.subarray(i * stride + kvmStatsDesc.size, (i + 1) * stride);
      const name = new TextDecoder().decode(nameBytes.subarray(0, Math.max(0, nameBytes.indexOf(0))));
      offsets.set(name, h.data_offset + d.offset);
    }
    return new VcpuStats(fd, offsets);
  }

  has(name: string): boolean {
    return this.offsets.has(name);
  }

  /** The first u64 of a statistic; 0 for one this kernel does not have. */
  read(name: string): bigint {
    return this.sum([name])();
  }

  /**
   * A reader of the sum of several statistics' first u64s (0 for any this kernel does not have), with one
   * pread over the span that holds them into a buffer it keeps: the vCPU thread reads its halt times at
   * every SCHEDOP_block and poll.
   */
  sum(names: readonly string[]): () => bigint {
    const at = names.map((n) => this.offsets.get(n)).filter((o): o is number => o !== undefined);
    if (at.length === 0) return () => 0n;
    const start = Math.min(...at);
    const span = new Uint8Array(Math.max(...at) + 8 - start);
    const words = new DataView(span.buffer);
    const within = at.map((o) => o - start);
    return () => {
      check('pread(KVM statistics)', libc().pread(this.fd, span, span.length, start));
      let total = 0n;
      for (const o of within) total += words.getBigUint64(o, true);
      return total;
    };
  }

  close(): void {
    libc().close(this.fd);
  }
}

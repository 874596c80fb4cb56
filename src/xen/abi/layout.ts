// The two guest ABIs of Xen on x86 and how a struct is laid out in each.
//
// native: a 64-bit guest (x86-64 SysV: every scalar aligned to its size).
// compat: a 32-bit guest (i386 SysV: 8-byte scalars are only 4-byte aligned
//         inside structs, unsigned long and pointers are 4 bytes).
//
// On x86 xen_ulong_t and xen_pfn_t are `unsigned long`, and a guest handle is
// `struct { T *p; }`, so all three are 8 bytes native and 4 bytes compat.
import { StructDef, type FieldType, type Scalar } from '../../common/struct.js';

export type Abi = 'native' | 'compat';
export const ABIS: readonly Abi[] = ['native', 'compat'];

/** A struct (or any value) in both ABIs; callers pick by the guest's mode. */
export interface PerAbi<N, C = N> {
  readonly native: N;
  readonly compat: C;
}

export type Ulong<A extends Abi> = A extends 'native' ? 'u64' : 'u32';

/** xen_ulong_t / unsigned long. */
export function ulong<A extends Abi>(abi: A): Ulong<A> {
  return (abi === 'native' ? 'u64' : 'u32') as Ulong<A>;
}
/** xen_pfn_t. */
export const pfn = ulong;
/** XEN_GUEST_HANDLE(T): a guest-virtual pointer. */
export const handle = ulong;

/** Bytes in a xen_ulong_t: 8 native, 4 compat. */
export const ULONG_BYTES: PerAbi<number> = { native: 8, compat: 4 };

const SCALAR_SIZE: Record<Scalar, number> = { u8: 1, i8: 1, u16: 2, i16: 2, u32: 4, i32: 4, u64: 8, i64: 8 };

function i386SizeAlign(t: FieldType): [size: number, align: number] {
  if (typeof t === 'string') return [SCALAR_SIZE[t], Math.min(SCALAR_SIZE[t], 4)];
  if ('bytes' in t) return [t.bytes, Math.min(t.align ?? 1, 4)];
  if ('struct' in t) return [t.struct.size, Math.min(t.struct.align, 4)];
  return [SCALAR_SIZE[t.array] * t.count, Math.min(SCALAR_SIZE[t.array], 4)];
}

const roundUp = (n: number, a: number) => Math.ceil(n / a) * a;

/**
 * A C struct in the given ABI. Native layout is the struct helper's natural
 * alignment; compat is computed here with i386 rules and then carried by an
 * ordinary StructDef (its read/write use the offsets, so they follow).
 * Nested structs must be defined for the same ABI.
 */
export function xstruct<const F extends Record<string, FieldType>>(
  name: string,
  abi: Abi,
  fields: F,
  options: { size?: number } = {},
): StructDef<F> {
  if (abi === 'native') return new StructDef(name, fields, options);
  const offsets: Record<string, number> = {};
  let off = 0;
  let maxAlign = 1;
  for (const [key, type] of Object.entries(fields)) {
    const [size, align] = i386SizeAlign(type);
    off = roundUp(off, align);
    offsets[key] = off;
    off += size;
    maxAlign = Math.max(maxAlign, align);
  }
  const natural = roundUp(off, maxAlign);
  if (options.size !== undefined && options.size < off) {
    throw new Error(`struct ${name}: declared size ${options.size} is smaller than its fields (${off})`);
  }
  // A packed def never needs more room than the i386 one, so the size check passes.
  const def = new StructDef(name, fields, { packed: true, size: options.size ?? natural });
  return Object.assign(def, { offsets: offsets as { [K in keyof F]: number }, align: maxAlign });
}

/** Both ABIs' version of a struct built by `make`; use when no field's type depends on the ABI. */
export function both<F extends Record<string, FieldType>>(make: (abi: Abi) => StructDef<F>): PerAbi<StructDef<F>> {
  return { native: make('native'), compat: make('compat') };
}

/** For logs: the first key of a constant group with this value, e.g. nameOf(XENMEM, 7) = 'add_to_physmap'. */
export function nameOf(group: Readonly<Record<string, number>>, value: number): string | undefined {
  for (const [name, v] of Object.entries(group)) if (v === value) return name;
  return undefined;
}

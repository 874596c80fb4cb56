// Struct descriptors over DataView: one definition gives the C layout (natural
// alignment unless packed), the size, and little-endian read/write. ABI structs
// (KVM, Xen, ACPI, PVH) are declared with it so a unit test can pin every offset.

export type Scalar = 'u8' | 'u16' | 'u32' | 'u64' | 'i8' | 'i16' | 'i32' | 'i64';

export type FieldType =
  | Scalar
  | { readonly bytes: number; readonly align?: number }
  | { readonly struct: StructDef<any> }
  | { readonly array: Scalar; readonly count: number };

type ValueOf<T> = T extends 'u64' | 'i64'
  ? bigint
  : T extends Scalar
    ? number
    : T extends { bytes: number }
      ? Uint8Array
      : T extends { struct: StructDef<infer G> }
        ? StructValue<G>
        : T extends { array: 'u64' | 'i64' }
          ? bigint[]
          : T extends { array: Scalar }
            ? number[]
            : never;

export type StructValue<F extends Record<string, FieldType>> = { -readonly [K in keyof F]: ValueOf<F[K]> };

const SCALAR_SIZE: Record<Scalar, number> = { u8: 1, i8: 1, u16: 2, i16: 2, u32: 4, i32: 4, u64: 8, i64: 8 };

function sizeAlign(t: FieldType): [size: number, align: number] {
  if (typeof t === 'string') return [SCALAR_SIZE[t], SCALAR_SIZE[t]];
  if ('bytes' in t) return [t.bytes, t.align ?? 1];
  if ('struct' in t) return [t.struct.size, t.struct.align];
  return [SCALAR_SIZE[t.array] * t.count, SCALAR_SIZE[t.array]];
}

function readScalar(v: DataView, off: number, t: Scalar): number | bigint {
  switch (t) {
    case 'u8': return v.getUint8(off);
    case 'i8': return v.getInt8(off);
    case 'u16': return v.getUint16(off, true);
    case 'i16': return v.getInt16(off, true);
    case 'u32': return v.getUint32(off, true);
    case 'i32': return v.getInt32(off, true);
    case 'u64': return v.getBigUint64(off, true);
    case 'i64': return v.getBigInt64(off, true);
  }
}

function writeScalar(v: DataView, off: number, t: Scalar, value: number | bigint): void {
  switch (t) {
    case 'u8': v.setUint8(off, Number(value)); break;
    case 'i8': v.setInt8(off, Number(value)); break;
    case 'u16': v.setUint16(off, Number(value), true); break;
    case 'i16': v.setInt16(off, Number(value), true); break;
    case 'u32': v.setUint32(off, Number(value), true); break;
    case 'i32': v.setInt32(off, Number(value), true); break;
    case 'u64': v.setBigUint64(off, BigInt(value), true); break;
    case 'i64': v.setBigInt64(off, BigInt(value), true); break;
  }
}

export class StructDef<F extends Record<string, FieldType>> {
  readonly size: number;
  readonly align: number;
  readonly offsets: { readonly [K in keyof F]: number };
  /** The fields in order, so reads do not list the definition again each time (offsets may be replaced: compat layouts). */
  private readonly fieldList: readonly { key: string; type: FieldType }[];

  constructor(
    readonly name: string,
    readonly fields: F,
    options: { packed?: boolean; size?: number } = {},
  ) {
    const offsets: Record<string, number> = {};
    let off = 0;
    let maxAlign = 1;
    for (const [key, type] of Object.entries(fields)) {
      const [size, align] = sizeAlign(type);
      const a = options.packed ? 1 : align;
      off = Math.ceil(off / a) * a;
      offsets[key] = off;
      off += size;
      maxAlign = Math.max(maxAlign, a);
    }
    this.align = maxAlign;
    const natural = Math.ceil(off / maxAlign) * maxAlign;
    if (options.size !== undefined && options.size < off) {
      throw new Error(`struct ${name}: declared size ${options.size} is smaller than its fields (${off})`);
    }
    this.size = options.size ?? natural;
    this.offsets = offsets as { [K in keyof F]: number };
    this.fieldList = Object.entries(fields).map(([key, type]) => ({ key, type }));
  }

  read(view: DataView, base = 0): StructValue<F> {
    const out: Record<string, unknown> = {};
    for (const { key, type } of this.fieldList) {
      const off = base + this.offsets[key];
      if (typeof type === 'string') out[key] = readScalar(view, off, type);
      else if ('bytes' in type) out[key] = new Uint8Array(view.buffer.slice(view.byteOffset + off, view.byteOffset + off + type.bytes));
      else if ('struct' in type) out[key] = type.struct.read(view, off);
      else {
        // A plain loop: Array.from with a mapping function is several times slower, and this is on hypercall paths.
        const step = SCALAR_SIZE[type.array];
        const values: (number | bigint)[] = [];
        for (let i = 0; i < type.count; i++) values.push(readScalar(view, off + i * step, type.array));
        out[key] = values;
      }
    }
    return out as StructValue<F>;
  }

  /** Writes the given fields; fields left out keep what the buffer holds. */
  write(view: DataView, base: number, value: Partial<StructValue<F>>): void {
    for (const [key, v] of Object.entries(value)) {
      const type = this.fields[key];
      if (type === undefined) throw new Error(`struct ${this.name} has no field ${key}`);
      const off = base + this.offsets[key];
      if (typeof type === 'string') writeScalar(view, off, type, v as number | bigint);
      else if ('bytes' in type) {
        const bytes = v as Uint8Array;
        if (bytes.length > type.bytes) throw new Error(`struct ${this.name}.${key}: ${bytes.length} bytes do not fit in ${type.bytes}`);
        new Uint8Array(view.buffer, view.byteOffset + off, type.bytes).fill(0).set(bytes);
      } else if ('struct' in type) type.struct.write(view, off, v as Partial<StructValue<any>>);
      else {
        const arr = v as (number | bigint)[];
        if (arr.length > type.count) throw new Error(`struct ${this.name}.${key}: ${arr.length} elements do not fit in ${type.count}`);
        const step = SCALAR_SIZE[type.array];
        arr.forEach((x, i) => writeScalar(view, off + i * step, type.array, x));
      }
    }
  }

  /** A zero-filled buffer holding the given fields. */
  encode(value: Partial<StructValue<F>>): Uint8Array {
    const bytes = new Uint8Array(this.size);
    this.write(new DataView(bytes.buffer), 0, value);
    return bytes;
  }

  decode(bytes: Uint8Array): StructValue<F> {
    if (bytes.length < this.size) throw new Error(`struct ${this.name}: need ${this.size} bytes, have ${bytes.length}`);
    return this.read(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  }
}

export function struct<const F extends Record<string, FieldType>>(
  name: string,
  fields: F,
  options?: { packed?: boolean; size?: number },
): StructDef<F> {
  return new StructDef(name, fields, options);
}

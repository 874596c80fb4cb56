// Reading request payloads the way xenstored does: NUL-terminated strings
// whose bytes are kept exactly (latin1: one char per byte), and numbers parsed
// with C's atoi/strtol rules, since guests and toolstacks rely on how
// xenstored reads "-1" or "0x10".

/** Bytes as a string of the same length, one char (U+0000..U+00FF) per byte. */
export function latin1(bytes: Uint8Array, start = 0, end = bytes.length): string {
  let s = '';
  // Paths are short: a loop beats building an argument list for them.
  if (end - start <= 64) {
    for (let i = start; i < end; i++) s += String.fromCharCode(bytes[i]!);
    return s;
  }
  // Chunked so that long values do not overflow the argument list.
  for (let at = start; at < end; at += 8192) {
    s += String.fromCharCode.apply(null, bytes.subarray(at, Math.min(end, at + 8192)) as unknown as number[]);
  }
  return s;
}

/** The bytes of a latin1 string; undefined if a char does not fit in a byte. */
export function latin1Bytes(s: string): Uint8Array | undefined {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff) return undefined;
    out[i] = c;
  }
  return out;
}

/** Strings each followed by a NUL, as one payload. */
export function nulTerminated(parts: readonly string[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.length + 1;
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    for (let i = 0; i < p.length; i++) out[at++] = p.charCodeAt(i);
    out[at++] = 0;
  }
  return out;
}

/** The NUL-terminated strings of a payload, in order; bytes after the last NUL are not a string (xenstored's get_strings). */
export function terminatedStrings(payload: Uint8Array): string[] {
  const out: string[] = [];
  let start = 0;
  for (let nul = payload.indexOf(0); nul >= 0; nul = payload.indexOf(0, start)) {
    out.push(latin1(payload, start, nul));
    start = nul + 1;
  }
  return out;
}

/** The single argument of a payload that is exactly one string and its NUL (xenstored's onearg), or undefined. */
export function oneArg(payload: Uint8Array): string | undefined {
  const nul = payload.indexOf(0);
  return nul >= 0 && nul === payload.length - 1 ? latin1(payload, 0, nul) : undefined;
}

/** How many NULs a payload holds (xs_count_strings). */
export function countStrings(payload: Uint8Array): number {
  let n = 0;
  for (let at = payload.indexOf(0); at >= 0; at = payload.indexOf(0, at + 1)) n++;
  return n;
}

const LONG_MAX = (1n << 63n) - 1n;
const LONG_MIN = -(1n << 63n);
const SPACE = /[ \t\n\v\f\r]/;

/** C's strtol on a 64-bit host: the value (clamped to long) and where parsing stopped; `end` is 0 when no digits were read. */
export function strtol(s: string, base: 0 | 10): { value: bigint; end: number } {
  let at = 0;
  while (at < s.length && SPACE.test(s[at]!)) at++;
  let negative = false;
  if (s[at] === '+' || s[at] === '-') negative = s[at++] === '-';
  let radix = 10;
  if (base === 0 && s[at] === '0') {
    if ((s[at + 1] === 'x' || s[at + 1] === 'X') && /[0-9a-fA-F]/.test(s[at + 2] ?? '')) {
      radix = 16;
      at += 2;
    } else radix = 8;
  }
  const digitsStart = at;
  let value = 0n;
  for (; at < s.length; at++) {
    const d = parseInt(s[at]!, radix);
    if (Number.isNaN(d)) break;
    value = value * BigInt(radix) + BigInt(d);
    if (value > LONG_MAX + 1n) value = LONG_MAX + 1n; // saturated: the clamp below decides
  }
  if (at === digitsStart) return { value: 0n, end: 0 };
  value = negative ? -value : value;
  return { value: value > LONG_MAX ? LONG_MAX : value < LONG_MIN ? LONG_MIN : value, end: at };
}

/** C's strtoull base 10: a magnitude beyond 64 bits saturates, a minus sign negates modulo 2^64. */
export function strtoull(s: string): bigint {
  const m = /^[ \t\n\v\f\r]*([+-]?)(\d+)/.exec(s);
  if (m === null) return 0n;
  const magnitude = BigInt(m[2]!);
  if (magnitude >= 1n << 64n) return (1n << 64n) - 1n;
  return BigInt.asUintN(64, m[1] === '-' ? -magnitude : magnitude);
}

/** C's atoi as xenstored stores it into an unsigned int: domain ids, ports, offsets. */
export function atoiUnsigned(s: string): number {
  return Number(BigInt.asUintN(32, strtol(s, 10).value));
}

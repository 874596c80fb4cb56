// The CMOS real-time clock (an MC146818, ports 0x70/0x71) an HVM guest has on
// Xen, which emulates it in the hypervisor: the index register (bit 7 the NMI
// mask, kept and ignored), the time and date in BCD or binary, 24- or 12-hour,
// as register B asks, running from the host's clock plus whatever offset the
// guest set (register B's SET bit is kept but does not stop the clock); registers A (update in progress never set: reads are never torn
// here), B, C (no interrupt flags: no alarm, periodic or update interrupt is
// raised) and D (valid RAM and time); and the rest of the 128 bytes as RAM.
// One state in a SharedArrayBuffer for every vCPU thread.
import type { PortDevice } from './io-bus.js';

const REG = { seconds: 0, minutes: 2, hours: 4, weekday: 6, day: 7, month: 8, year: 9, a: 0x0a, b: 0x0b, c: 0x0c, d: 0x0d } as const;
const B_BINARY = 0x04;
const B_24_HOUR = 0x02;
const D_VALID = 0x80;
const HOUR_PM = 0x80;
/** Register A as firmware leaves it: a 32.768 kHz time base, a 1024 Hz rate. */
const A_DEFAULT = 0x26;
const INDEX_MASK = 0x7f;
const CMOS_BYTES = 128;
/** Byte CMOS_BYTES: the index register; then, as a float64, the guest's offset from the host clock in seconds. */
const INDEX_AT = CMOS_BYTES;
const OFFSET_AT = CMOS_BYTES + 8;

const TIME_FIELDS: ReadonlySet<number> = new Set([REG.seconds, REG.minutes, REG.hours, REG.weekday, REG.day, REG.month, REG.year]);
const bcd = (v: number) => ((v / 10) | 0) * 16 + (v % 10);
const fromBcd = (v: number) => (v >> 4) * 10 + (v & 0x0f);

export class CmosRtc implements PortDevice {
  private readonly bytes: Uint8Array;
  private readonly offset: Float64Array;

  constructor(
    state: SharedArrayBuffer,
    /** Host time in seconds since the epoch. */
    private readonly now: () => number = () => Date.now() / 1000,
  ) {
    this.bytes = new Uint8Array(state, 0, CMOS_BYTES + 1);
    this.offset = new Float64Array(state, OFFSET_AT, 1);
  }

  static createState(): SharedArrayBuffer {
    const state = new SharedArrayBuffer(OFFSET_AT + 8);
    const bytes = new Uint8Array(state);
    bytes[REG.a] = A_DEFAULT;
    bytes[REG.b] = B_24_HOUR;
    bytes[REG.d] = D_VALID;
    return state;
  }

  /** Port 0x70 (offset 0): the index; 0x71 (offset 1): the register it selects. */
  read(offset: number): number {
    if (offset === 0) return this.bytes[INDEX_AT];
    const reg = this.bytes[INDEX_AT] & INDEX_MASK;
    if (TIME_FIELDS.has(reg)) return this.timeField(reg);
    if (reg === REG.c) return 0;
    return this.bytes[reg];
  }

  write(offset: number, _size: number, value: number): void {
    if (offset === 0) {
      this.bytes[INDEX_AT] = value & 0xff;
      return;
    }
    const reg = this.bytes[INDEX_AT] & INDEX_MASK;
    if (reg === REG.c || reg === REG.d) return; // read-only
    if (reg === REG.a) {
      this.bytes[reg] = value & 0x7f; // UIP is read-only
      return;
    }
    if (TIME_FIELDS.has(reg)) {
      this.setTimeField(reg, value & 0xff);
      return;
    }
    this.bytes[reg] = value & 0xff;
  }

  /** The guest's time now, as a UTC date. */
  private date(): Date {
    return new Date((this.now() + this.offset[0]) * 1000);
  }

  private encode(v: number): number {
    return this.bytes[REG.b] & B_BINARY ? v : bcd(v);
  }

  private decode(v: number): number {
    return this.bytes[REG.b] & B_BINARY ? v : fromBcd(v);
  }

  private timeField(reg: number): number {
    const d = this.date();
    switch (reg) {
      case REG.seconds: return this.encode(d.getUTCSeconds());
      case REG.minutes: return this.encode(d.getUTCMinutes());
      case REG.hours: {
        const h = d.getUTCHours();
        if (this.bytes[REG.b] & B_24_HOUR) return this.encode(h);
        return this.encode(h % 12 || 12) | (h >= 12 ? HOUR_PM : 0);
      }
      case REG.weekday: return this.encode(d.getUTCDay() + 1);
      case REG.day: return this.encode(d.getUTCDate());
      case REG.month: return this.encode(d.getUTCMonth() + 1);
      default: return this.encode(d.getUTCFullYear() % 100);
    }
  }

  /**
   * A write to a time field moves the guest's clock: the offset becomes whatever makes that field read
   * back. A value no date has (minute 61, month 13, February 30) leaves the clock as it was.
   */
  private setTimeField(reg: number, value: number): void {
    if (reg === REG.weekday) return; // follows from the date
    const d = this.date();
    const f = { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate(), hours: d.getUTCHours(), minutes: d.getUTCMinutes(), seconds: d.getUTCSeconds() };
    const v = this.decode(value & (reg === REG.hours && !(this.bytes[REG.b] & B_24_HOUR) ? ~HOUR_PM : 0xff));
    if (reg === REG.seconds) f.seconds = v;
    else if (reg === REG.minutes) f.minutes = v;
    else if (reg === REG.hours) f.hours = this.bytes[REG.b] & B_24_HOUR ? v : (v % 12) + (value & HOUR_PM ? 12 : 0);
    else if (reg === REG.day) f.day = v;
    else if (reg === REG.month) f.month = v;
    else f.year = 2000 + v;
    const t = Date.UTC(f.year, f.month - 1, f.day, f.hours, f.minutes, f.seconds);
    const back = new Date(t);
    const valid = f.seconds < 60 && f.minutes < 60 && f.hours < 24 && back.getUTCDate() === f.day && back.getUTCMonth() === f.month - 1;
    // Whole seconds are set; the fraction of the second the clock was in carries on.
    if (valid) this.offset[0] = t / 1000 + (this.now() + this.offset[0]) % 1 - this.now();
  }
}

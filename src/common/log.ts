// The process-wide logger: pino, synchronous to stderr so lines from vCPU
// threads are never lost when a guest ends the run. Each thread makes its own.
import { pino, type Logger } from 'pino';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
export const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

let root: Logger | undefined;

export function configureLogging(level: LogLevel): void {
  root = pino({ level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: 2, sync: true }));
}

export function log(component: string): Logger {
  root ??= pino({ level: (process.env.XENKVM_LOG as LogLevel | undefined) ?? 'warn', base: undefined }, pino.destination({ dest: 2, sync: true }));
  return root.child({ component });
}

/**
 * Guest-triggered log lines are rate-limited: a guest must not be able to
 * flood the host's log. Each key may log `burst` lines per `windowMs`; the
 * count of dropped lines is reported with the next line that gets through.
 */
export class RateLimitedLog {
  private readonly windows = new Map<string, { start: number; count: number; dropped: number }>();

  constructor(
    private readonly logger: Logger,
    private readonly burst = 10,
    private readonly windowMs = 10_000,
  ) {}

  /** For what a guest reports about itself (its drivers' log messages). */
  info(key: string, fields: Record<string, unknown>, message: string): void {
    this.write('info', key, fields, message);
  }

  warn(key: string, fields: Record<string, unknown>, message: string): void {
    this.write('warn', key, fields, message);
  }

  /** For failures inside xenkvm that a guest may be able to cause again and again. */
  error(key: string, fields: Record<string, unknown>, message: string): void {
    this.write('error', key, fields, message);
  }

  private write(level: 'info' | 'warn' | 'error', key: string, fields: Record<string, unknown>, message: string): void {
    const now = Date.now();
    let w = this.windows.get(key);
    if (!w || now - w.start >= this.windowMs) {
      const dropped = w?.dropped ?? 0;
      w = { start: now, count: 0, dropped: 0 };
      this.windows.set(key, w);
      if (dropped) fields = { ...fields, suppressed: dropped };
    }
    if (w.count++ < this.burst) this.logger[level](fields, message);
    else w.dropped++;
  }
}

/** Characters of guest-supplied text a log line or error message quotes at most. */
export const GUEST_TEXT_QUOTED = 32;

/**
 * Guest-supplied text for a log line or an error message: at most GUEST_TEXT_QUOTED characters,
 * quoted, anything outside printable ASCII (and the quote and backslash) escaped, and how much
 * was left out.
 */
export function quoteGuestText(text: string): string {
  const shown = [...text.slice(0, GUEST_TEXT_QUOTED)]
    .map((c) => {
      const code = c.charCodeAt(0);
      if (c === '"' || c === '\\') return `\\${c}`;
      return code >= 0x20 && code < 0x7f ? c : `\\x${(code & 0xff).toString(16).padStart(2, '0')}`;
    })
    .join('');
  const rest = text.length - GUEST_TEXT_QUOTED;
  return `"${shown}"${rest > 0 ? ` (and ${rest} more)` : ''}`;
}

// For unit tests: a real pino logger whose lines are kept, parsed, so a test
// can assert what was logged and that nothing failed inside xenkvm.
import { pino } from 'pino';

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

const WARN = 40;
const ERROR = 50;

export function capturedLogger() {
  const lines: LogLine[] = [];
  const logger = pino({ level: 'trace' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { logger, lines, warns: () => lines.filter((l) => l.level === WARN), errors: () => lines.filter((l) => l.level === ERROR) };
}

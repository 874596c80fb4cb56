// A node --test reporter that writes the run's totals as JSON (the counts node's
// own summary prints: tests, pass, fail, cancelled, skipped, todo), so the suite's
// driver (test/run.ts) can add up runs on the host and in the nested VM.
import type { TestEvent } from 'node:test/reporters';

export interface TestCounts {
  tests: number;
  pass: number;
  fail: number;
  cancelled: number;
  skipped: number;
  todo: number;
}

export default async function* countReporter(source: AsyncIterable<TestEvent>): AsyncGenerator<string> {
  const counts: TestCounts = { tests: 0, pass: 0, fail: 0, cancelled: 0, skipped: 0, todo: 0 };
  for await (const event of source) {
    if (event.type !== 'test:diagnostic') continue;
    const m = /^(tests|pass|fail|cancelled|skipped|todo) (\d+)$/.exec(event.data.message);
    if (m) counts[m[1] as keyof TestCounts] = Number(m[2]);
  }
  yield `${JSON.stringify(counts)}\n`;
}

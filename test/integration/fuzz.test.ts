// The guest-side hypercall fuzzer (guests/tests/xen-fuzz.c), a short seeded run;
// `npm run fuzz` runs long ones (test/fuzz.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hostKvmIsPvm } from '../../src/kvm/system.js';
import { runFuzz } from '../fuzz-run.js';
import { requireKvm } from '../guest-runner.js';

test('fuzz: 2,000 hostile hypercalls from rings 0 and 3 while vCPU 1 sends events: all answered, no event lost, nothing touched outside what they were handed, a bounded log', async () => {
  requireKvm();
  const r = await runFuzz({ seed: 1, calls: 2000, ring3: !hostKvmIsPvm(), timeoutMs: 170_000 });
  assert.ok(r.passed, `seed 1: ${r.failure}`);
  assert.equal(r.figures.calls, 2000);
  assert.equal(r.figures.lost, 0);
  assert.ok(r.figures.sends > 0 && r.figures.acks >= r.figures.sends, `${r.figures.sends} sent, ${r.figures.acks} taken`);
  if (!hostKvmIsPvm()) assert.equal(r.figures.ring3, 125, 'every 16th call from ring 3, each -EPERM');
  // Every answer is accounted for: 0, a positive value or an errno.
  const answers = Object.entries(r.figures).filter(([k]) => /^e\d+$/.test(k) || k === 'zero' || k === 'positive').reduce((n, [, v]) => n + v, 0);
  assert.equal(answers + (r.figures.ring3 ?? 0), 2000);
  assert.equal(r.logErrors, 0, 'nothing failed inside xenkvm');
  // Rate-limited: each kind of line at most 10 per 10 s, and a guest causes only a few kinds.
  assert.ok(r.logLines <= 40 * Math.ceil(r.seconds / 10 + 1), `${r.logLines} log lines in ${r.seconds} s`);
});

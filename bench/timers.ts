// Timer punctuality: how late a Xen timer fires after its deadline.
//   host  — the timer thread's own loop (TimerState.run on the real clock),
//           200 singleshot timers 1 ms apart: the time from deadline to
//           VIRQ_TIMER being raised. Target: within 0.5 ms.
//   guest — the same as seen by a guest (guests/tests/xen-timer.c): deadline
//           to the guest's upcall handler reading its pvclock, which adds
//           event delivery and the guest's own handler.
import { monotonicRawNs } from '../src/common/clock.js';
import { TimerState } from '../src/xen/timers.js';
import { root, runXenkvm } from './common.js';

const TARGET_MS = 0.5;
const SAMPLES = 200;

const timers = TimerState.create(1);
const lateness: number[] = [];
let deadline = monotonicRawNs() + 1_000_000n;
timers.setSingleshot(0, deadline);
timers.run(monotonicRawNs, () => {
  lateness.push(Number(monotonicRawNs() - deadline) / 1e6);
  if (lateness.length === SAMPLES) return timers.stop();
  deadline = monotonicRawNs() + 1_000_000n;
  timers.setSingleshot(0, deadline);
});
lateness.sort((a, b) => a - b);
const pct = (p: number) => lateness[Math.min(lateness.length - 1, Math.floor((p / 100) * lateness.length))];

const out = runXenkvm(['--kernel', `${root}guests/build/xen-timer.elf`, '--vcpus', '2']);
const guest = /KIT-TIMER samples=(\d+) max-late-ns=(\d+) mean-late-ns=(\d+) early=(\d+)/.exec(out);
if (!guest) throw new Error(`xen-timer printed no KIT-TIMER line:\n${out}`);

const ok = pct(99) <= TARGET_MS;
console.log(`timer lateness after the deadline, ${SAMPLES} singleshot timers of 1 ms`);
console.log(`  host (VIRQ_TIMER raised): median ${pct(50).toFixed(3)} ms, p99 ${pct(99).toFixed(3)} ms, max ${lateness[lateness.length - 1].toFixed(3)} ms (target p99 ≤ ${TARGET_MS} ms) ${ok ? 'PASS' : 'FAIL'}`);
console.log(`  guest (upcall handler, ${guest[1]} timers): mean ${(Number(guest[3]) / 1e6).toFixed(3)} ms, max ${(Number(guest[2]) / 1e6).toFixed(3)} ms; ${guest[4]} more read a time before their deadline`);
process.exitCode = ok ? 0 : 1;

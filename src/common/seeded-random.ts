// For property tests and fuzzing: a small deterministic generator
// (xorshift32), so a failing run can be replayed from its seed. An LCG's low
// bits repeat too soon to mix choices and arguments drawn one after another.

/** A function giving whole numbers in [0, n), the same sequence for the same seed (non-zero). */
export function seededRandom(seed: number): (n: number) => number {
  let s = seed | 0 || 1;
  return (n) => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) % n;
  };
}

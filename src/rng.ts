/** The seeded PRNG of model generation, training init and data order (not the sampler's; see engine/sampler.ts). */

/** xoshiro128** seeded by splitmix32: fast, good enough, reproducible everywhere. */
export class Rng {
  private a: number; private b: number; private c: number; private d: number;
  private spare: number | undefined;
  constructor(seed: number) {
    let x = seed >>> 0;
    const sm = () => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = sm(); this.b = sm(); this.c = sm(); this.d = sm();
  }
  u32(): number {
    const r = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a; this.d ^= this.b; this.b ^= this.c; this.a ^= this.d;
    this.c ^= t; this.d = rotl(this.d, 11);
    return r;
  }
  /** uniform in (0, 1) */
  uniform(): number { return (this.u32() + 0.5) / 4294967296; }
  /** standard normal (Box-Muller) */
  normal(): number {
    if (this.spare !== undefined) { const s = this.spare; this.spare = undefined; return s; }
    const r = Math.sqrt(-2 * Math.log(this.uniform()));
    const th = 2 * Math.PI * this.uniform();
    this.spare = r * Math.sin(th);
    return r * Math.cos(th);
  }
}
function rotl(x: number, k: number): number { return (x << k) | (x >>> (32 - k)); }

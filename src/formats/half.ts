/**
 * IEEE half (f16) and bfloat16 (bf16) conversions, bit-exact with ggml.
 *
 * Exports:
 *   f16ToF32(bits: number): number                       f16 bit pattern -> f32 value (table lookup)
 *   f32ToF16(x: number): number                          f32 value -> f16 bits, round-to-nearest-even
 *   f16ArrayToF32(src: Uint16Array, out?: Float32Array): Float32Array
 *   f32ArrayToF16(src: Float32Array, out?: Uint16Array): Uint16Array
 *   f32ArrayToF16At(src: Float32Array, srcOff: number, out: Uint16Array, outOff: number, n: number): void
 *   bf16ToF32(bits: number): number
 *   f32ToBf16(x: number): number                         round-to-nearest-even, NaN kept quiet
 *   bf16ArrayToF32(src: Uint16Array, out?: Float32Array): Float32Array
 *   f32ArrayToBf16(src: Float32Array, out?: Uint16Array): Uint16Array
 *
 * Semantics follow ggml/src/ggml-impl.h: `ggml_compute_fp32_to_fp16` (RNE, overflow -> ±inf,
 * NaN -> sign|0x7e00) and `ggml_compute_fp32_to_bf16` (RNE via +0x7fff+lsb, NaN -> (bits>>16)|64).
 * Scalar inputs are first rounded to f32 (they are JS doubles), as a C `float` argument would be.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** All 65536 f16 values as f32 (256 KiB), so f16 -> f32 is one load, like ggml's table. */
const F16_TABLE: Float32Array = (() => {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    let v: number;
    if (exp === 0) v = mant * 2 ** -24; // zero / subnormal
    else if (exp === 31) v = mant ? NaN : Infinity;
    else v = (1024 + mant) * 2 ** (exp - 25);
    t[h] = sign * v;
  }
  return t;
})();

export function f16ToF32(bits: number): number {
  return F16_TABLE[bits & 0xffff]!;
}

/** Round-to-nearest-even of the f32 bit pattern `u` to f16 bits. */
function f32BitsToF16(u: number): number {
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  const mant = u & 0x7fffff;
  if (exp === 0xff) return sign | (mant ? 0x7e00 : 0x7c00); // NaN (quiet) / inf
  const e = exp - 127 + 15; // re-biased exponent
  if (e >= 31) return sign | 0x7c00; // overflow -> inf
  if (e <= 0) {
    // f16 subnormal (or zero): units of 2^-24; value = (1.mant) * 2^(e-15) = m * 2^(e-38)
    if (e < -10) return sign; // < 2^-25: rounds to zero
    const m = mant | 0x800000;
    const shift = 14 - e; // 14 .. 24
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && h & 1)) h++;
    return sign | h; // a carry lands in the exponent field, which is correct
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++; // carry may give 0x7c00 = inf: correct
  return sign | h;
}

export function f32ToF16(x: number): number {
  f32[0] = x;
  return f32BitsToF16(u32[0]!);
}

export function f16ArrayToF32(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  for (let i = 0; i < src.length; i++) out[i] = F16_TABLE[src[i]!]!;
  return out;
}

export function f32ArrayToF16(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  f32ArrayToF16At(src, 0, out, 0, src.length);
  return out;
}

/**
 * out[outOff + i] = f16 bits of src[srcOff + i] for i < n (as f32ArrayToF16, without subarray views).
 * Values whose f16 is normal (|x| in [2^-14, 2^16), incl. a rounding carry into inf) take a branch-free
 * round-to-nearest-even; the rest (subnormal, zero, inf, NaN) go through f32BitsToF16.
 */
export function f32ArrayToF16At(src: Float32Array, srcOff: number, out: Uint16Array, outOff: number, n: number): void {
  const bits = new Uint32Array(src.buffer, src.byteOffset + 4 * srcOff, n); // Float32Array offsets are 4-aligned
  for (let i = 0; i < n; i++) {
    const u = bits[i]!;
    const a = u & 0x7fffffff;
    if (a >= 0x38800000 && a < 0x47800000) {
      // re-bias the exponent (127 → 15), then round off 13 mantissa bits to nearest even
      out[outOff + i] = ((u >>> 16) & 0x8000) | ((a - 0x38000000 + 0xfff + ((a >>> 13) & 1)) >>> 13);
    } else out[outOff + i] = f32BitsToF16(u);
  }
}

export function bf16ToF32(bits: number): number {
  u32[0] = (bits & 0xffff) << 16;
  return f32[0]!;
}

function f32BitsToBf16(u: number): number {
  if ((u & 0x7fffffff) >>> 0 > 0x7f800000) return ((u >>> 16) | 64) & 0xffff; // NaN: force quiet
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

export function f32ToBf16(x: number): number {
  f32[0] = x;
  return f32BitsToBf16(u32[0]!);
}

export function bf16ArrayToF32(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  const o = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < src.length; i++) o[i] = src[i]! << 16;
  return out;
}

export function f32ArrayToBf16(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32BitsToBf16(bits[i]!);
  return out;
}

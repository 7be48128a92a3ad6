/**
 * C-level checks of native helpers that have no addon entry point of their own: each native/test/*.c is
 * compiled with the addon's sources and flags and must exit 0.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const SRC = ['ggml_compat.c', 'kernels_scalar.c', 'kernels_avx2.c', 'kernels_avx512.c', 'attn_prep.c'].map((f) => join('native/src', f));
const hasCc = ((): boolean => {
  try {
    execFileSync('gcc', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

test('AVX-512 swiglu, F32 dot, decode attention, SIMD Q8_0/Q8_K quantizers and f16 rows == the scalar code, bit for bit (native/test/simd_vs_scalar.c)', { skip: hasCc ? false : 'no gcc' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'moekit-ctest-'));
  try {
    const exe = join(dir, 'simd_vs_scalar');
    execFileSync('gcc', ['-O2', '-std=gnu11', '-ffp-contract=off', '-o', exe, 'native/test/simd_vs_scalar.c', ...SRC, '-lm', '-lpthread']);
    const out = execFileSync(exe, { encoding: 'utf8' });
    assert.match(out, /mismatches 0|skip: no AVX-512/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

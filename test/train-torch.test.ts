/**
 * moekit's trainer against PyTorch (scripts/torch_ref.py, float64, same initial weights and batches):
 * 10 steps of losses, aux losses and gradient norms must agree within 1e-4 relative. The fixture holds
 * PyTorch's numbers; its `command` field regenerates it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { REFERENCE_CASES, runReference } from '../src/train/reference.js';

const fixture = JSON.parse(readFileSync(new URL('./fixtures/train/torch_ref.json', import.meta.url), 'utf8')) as {
  cases: Record<string, Array<{ loss: number; lm: number; lb: number; z: number; gradNorm: number; lr: number }>>;
};

for (const c of REFERENCE_CASES) {
  test(`10 training steps match PyTorch: ${c.name}`, () => {
    const ref = fixture.cases[c.name];
    assert.ok(ref, `fixture has no case ${c.name}; regenerate it (command in the fixture)`);
    const ours = runReference(c);
    assert.equal(ours.length, ref.length);
    let worst = 0;
    ours.forEach((s, i) => {
      for (const k of ['loss', 'lm', 'lb', 'z', 'gradNorm', 'lr'] as const) {
        const rel = Math.abs(s[k] - ref[i][k]) / Math.max(Math.abs(ref[i][k]), 1e-12);
        worst = Math.max(worst, rel);
        assert.ok(rel < 1e-4 || (ref[i][k] === 0 && s[k] === 0), `step ${i} ${k}: moekit ${s[k]} vs torch ${ref[i][k]} (rel ${rel.toExponential(2)})`);
      }
    });
    // the run trains: the loss falls and the aux losses are live where configured
    assert.ok(ours[9].lm < ours[0].lm);
    if (c.model.router.lbCoef) assert.ok(ours.every((s) => s.lb > 0));
  });
}

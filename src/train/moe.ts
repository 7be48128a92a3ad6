/**
 * The MoE FFN for training: router → top-k experts (SwiGLU) → weighted sum, plus an optional shared
 * expert behind an optional sigmoid gate (Qwen2-MoE `shared_expert_gate`), as a forward/backward pair.
 * Same layout and arithmetic as inference (src/nn/moe.ts): experts stacked [E, F, D] / [E, D, F].
 * Tokens are grouped per expert (gather → three matmuls → scatter-add), so each expert only sees
 * its own rows: dropless by default, capacity-limited when the router config says so.
 */
import { matmul_backward, matmul_forward, swiglu_backward, swiglu_forward } from './layers.js';
import { router_backward, router_forward, type RouteResult, type RouterConfig } from './router.js';

/** SwiGLU FFN weights (views into the flat parameter array) and their gradients. */
export interface FfnParams {
  /** [F, D] */
  gate: Float32Array;
  /** [F, D] */
  up: Float32Array;
  /** [D, F] */
  down: Float32Array;
}

export interface FfnCache {
  x: Float32Array;
  g: Float32Array;
  u: Float32Array;
  a: Float32Array;
  n: number;
}

/** y[n, D] = down(silu(gate·x) ⊙ up·x) */
export function ffn_forward(y: Float32Array, x: Float32Array, w: FfnParams, n: number, D: number, F: number): FfnCache {
  const g = new Float32Array(n * F);
  const u = new Float32Array(n * F);
  const a = new Float32Array(n * F);
  matmul_forward(g, x, w.gate, n, D, F);
  matmul_forward(u, x, w.up, n, D, F);
  swiglu_forward(a, g, u, n * F);
  matmul_forward(y, a, w.down, n, F, D);
  return { x, g, u, a, n };
}

export function ffn_backward(dx: Float32Array, dw: FfnParams, dy: Float32Array, w: FfnParams, c: FfnCache, D: number, F: number): void {
  const { n } = c;
  const da = new Float32Array(n * F);
  matmul_backward(da, dw.down, null, dy, c.a, w.down, n, F, D);
  const dg = new Float32Array(n * F);
  const du = new Float32Array(n * F);
  swiglu_backward(dg, du, da, c.g, c.u, n * F);
  matmul_backward(dx, dw.gate, null, dg, c.x, w.gate, n, D, F);
  matmul_backward(dx, dw.up, null, du, c.x, w.up, n, D, F);
}

export interface MoeParams {
  /** [R, D], R = E + null experts */
  router: Float32Array;
  /** [E, F, D] */
  gateExps: Float32Array;
  /** [E, F, D] */
  upExps: Float32Array;
  /** [E, D, F] */
  downExps: Float32Array;
  shared?: FfnParams;
  /** [D] (a 1-row matrix) */
  sharedGate?: Float32Array;
}

export interface MoeShape {
  D: number;
  E: number;
  /** router outputs: E + null experts */
  R: number;
  F: number;
  /** shared expert width (0 = none) */
  Fs: number;
}

interface ExpertCache {
  /** token row of each assignment */
  rows: Int32Array;
  /** slot (t·K + j) of each assignment */
  slots: Int32Array;
  ffn: FfnCache;
  /** [n, D] expert outputs before weighting */
  y: Float32Array;
}

export interface MoeCache {
  x: Float32Array;
  T: number;
  logits: Float32Array;
  route: RouteResult;
  experts: Array<ExpertCache | null>;
  shared?: { ffn: FfnCache; y: Float32Array; gate?: Float32Array };
}

const sliceOf = (a: Float32Array, e: number, n: number) => a.subarray(e * n, (e + 1) * n);

/** out[T, D] = Σ_j w_j·E_{id_j}(x) [+ σ(x·w_sg)·Shared(x)]; `bias` selects only. */
export function moe_forward(out: Float32Array, x: Float32Array, T: number, w: MoeParams, s: MoeShape, rc: RouterConfig, bias?: Float32Array): MoeCache {
  const { D, E, R, F, Fs } = s;
  const logits = new Float32Array(T * R);
  matmul_forward(logits, x, w.router, T, D, R);
  const route = router_forward(logits, T, R, E, rc, bias);
  const { K, ids, weights, keep } = route;
  out.fill(0);
  // group the surviving assignments by expert, in token order
  const byExpert: number[][] = Array.from({ length: E }, () => []);
  for (let slot = 0; slot < T * K; slot++) if (keep[slot]) byExpert[ids[slot]].push(slot);
  const experts: Array<ExpertCache | null> = [];
  for (let e = 0; e < E; e++) {
    const sl = byExpert[e];
    const n = sl.length;
    if (n === 0) { experts.push(null); continue; }
    const rows = new Int32Array(n);
    const slots = Int32Array.from(sl);
    const xg = new Float32Array(n * D);
    for (let r = 0; r < n; r++) {
      rows[r] = Math.floor(sl[r] / K);
      xg.set(x.subarray(rows[r] * D, rows[r] * D + D), r * D);
    }
    const y = new Float32Array(n * D);
    const ffn = ffn_forward(y, xg, { gate: sliceOf(w.gateExps, e, F * D), up: sliceOf(w.upExps, e, F * D), down: sliceOf(w.downExps, e, D * F) }, n, D, F);
    for (let r = 0; r < n; r++) {
      const wt = weights[slots[r]];
      const o = rows[r] * D;
      for (let i = 0; i < D; i++) out[o + i] += wt * y[r * D + i];
    }
    experts.push({ rows, slots, ffn, y });
  }
  const cache: MoeCache = { x, T, logits, route, experts };
  if (Fs > 0 && w.shared) {
    const y = new Float32Array(T * D);
    const ffn = ffn_forward(y, x, w.shared, T, D, Fs);
    let gate: Float32Array | undefined;
    if (w.sharedGate) {
      gate = new Float32Array(T);
      matmul_forward(gate, x, w.sharedGate, T, D, 1);
      for (let t = 0; t < T; t++) gate[t] = 1 / (1 + Math.exp(-gate[t]));
    }
    for (let t = 0; t < T; t++) {
      const g = gate ? gate[t] : 1;
      for (let i = 0; i < D; i++) out[t * D + i] += g * y[t * D + i];
    }
    cache.shared = { ffn, y, gate };
  }
  return cache;
}

/** dx[T, D] += ∂/∂x; parameter gradients accumulate into dw. `auxScale` multiplies the LB/z gradients. */
export function moe_backward(dx: Float32Array, dw: MoeParams, dout: Float32Array, w: MoeParams, c: MoeCache, s: MoeShape, rc: RouterConfig, auxScale = 1): void {
  const { D, E, R, F, Fs } = s;
  const { T, route } = c;
  const dweights = new Float32Array(T * route.K);
  for (let e = 0; e < E; e++) {
    const ec = c.experts[e];
    if (!ec) continue;
    const n = ec.rows.length;
    const dy = new Float32Array(n * D);
    for (let r = 0; r < n; r++) {
      const wt = route.weights[ec.slots[r]];
      const o = ec.rows[r] * D;
      let dot = 0;
      for (let i = 0; i < D; i++) { dy[r * D + i] = wt * dout[o + i]; dot += dout[o + i] * ec.y[r * D + i]; }
      dweights[ec.slots[r]] = dot;
    }
    const dxg = new Float32Array(n * D);
    const we = { gate: sliceOf(w.gateExps, e, F * D), up: sliceOf(w.upExps, e, F * D), down: sliceOf(w.downExps, e, D * F) };
    const dwe = { gate: sliceOf(dw.gateExps, e, F * D), up: sliceOf(dw.upExps, e, F * D), down: sliceOf(dw.downExps, e, D * F) };
    ffn_backward(dxg, dwe, dy, we, ec.ffn, D, F);
    for (let r = 0; r < n; r++) {
      const o = ec.rows[r] * D;
      for (let i = 0; i < D; i++) dx[o + i] += dxg[r * D + i];
    }
  }
  if (c.shared && w.shared && dw.shared) {
    const { y, gate } = c.shared;
    const dy = new Float32Array(T * D);
    const dz = gate ? new Float32Array(T) : null;
    for (let t = 0; t < T; t++) {
      const g = gate ? gate[t] : 1;
      let dot = 0;
      for (let i = 0; i < D; i++) { dy[t * D + i] = g * dout[t * D + i]; dot += dout[t * D + i] * y[t * D + i]; }
      if (dz && gate) dz[t] = dot * g * (1 - g);
    }
    ffn_backward(dx, dw.shared, dy, w.shared, c.shared.ffn, D, Fs);
    if (dz && w.sharedGate && dw.sharedGate) matmul_backward(dx, dw.sharedGate, null, dz, c.x, w.sharedGate, T, D, 1);
  }
  const dlogits = new Float32Array(T * R);
  router_backward(dlogits, dweights, route, c.logits, T, R, E, rc, auxScale);
  matmul_backward(dx, dw.router, null, dlogits, c.x, w.router, T, D, R);
}

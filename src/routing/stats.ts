/** Measured effect of routing controls: mean active (routed) experts per token, per layer. */
import type { ForwardHooks, RoutingObserver } from '../nn/moe.js';

export class ActiveExperts {
  /** per layer: Σ over tokens of selected experts (ids ≥ 0) */
  private readonly active = new Map<number, number>();
  /** per layer: tokens routed */
  private readonly tokens = new Map<number, number>();

  /** An onRouting observer that counts. */
  readonly observe: RoutingObserver = (layer, r, T) => {
    let n = 0;
    for (let i = 0; i < T * r.K; i++) if (r.ids[i] >= 0) n++;
    this.active.set(layer, (this.active.get(layer) ?? 0) + n);
    this.tokens.set(layer, (this.tokens.get(layer) ?? 0) + T);
  };

  /** mean active experts per token for each MoE layer, by layer index */
  perLayer(): Map<number, number> {
    const out = new Map<number, number>();
    for (const [l, n] of [...this.active].sort((a, b) => a[0] - b[0])) out.set(l, n / this.tokens.get(l)!);
    return out;
  }

  /** mean over MoE layers of the per-layer means (NaN before any routing) */
  mean(): number {
    const v = [...this.perLayer().values()];
    return v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN;
  }
}

/** Hooks that run both: observers both see every routing; `b`'s policy wins if both have one. */
export function combineHooks(a: ForwardHooks | undefined, b: ForwardHooks | undefined): ForwardHooks {
  const onA = a?.onRouting;
  const onB = b?.onRouting;
  return {
    routePolicy: b?.routePolicy ?? a?.routePolicy,
    onRouting: onA && onB ? (l, r, T) => { onA(l, r, T); onB(l, r, T); } : (onA ?? onB),
  };
}

/**
 * Scratch buffers for one forward pass, reused from one pass to the next (decode steps would otherwise
 * allocate a dozen Float32Arrays per layer, whose collection competes with the compute threads).
 *
 * A buffer is named by its role; asking again for the same name returns the same memory, so a name
 * must not be asked for while an earlier result under that name is still in use — layers run one
 * after another, so each role is one name. Contents are NOT cleared: every user overwrites its buffer.
 * Buffers grow on demand and keep their largest size; views of the requested length are cached, so
 * a steady-state decode step allocates nothing here.
 */
type Typed = Float32Array | Int32Array;

interface Slot<A extends Typed> {
  buf: A;
  view: A;
}

/** The buffer for `name` in `slots`, exactly `n` long: grown with `make` when too short, views cached. */
function take<A extends Typed>(slots: Map<string, Slot<A>>, name: string, n: number, make: (n: number) => A): A {
  let s = slots.get(name);
  if (s === undefined || s.buf.length < n) {
    const buf = make(n);
    s = { buf, view: buf };
    slots.set(name, s);
  } else if (s.view.length !== n) s.view = s.buf.subarray(0, n) as A;
  return s.view;
}

const newF32 = (n: number): Float32Array => new Float32Array(n);
const newI32 = (n: number): Int32Array => new Int32Array(n);

export class Workspace {
  private readonly f32s = new Map<string, Slot<Float32Array>>();
  private readonly i32s = new Map<string, Slot<Int32Array>>();

  /** A Float32Array of exactly `n` elements for `name` (contents unspecified). */
  f32(name: string, n: number): Float32Array {
    return take(this.f32s, name, n, newF32);
  }

  /** An Int32Array of exactly `n` elements for `name` (contents unspecified). */
  i32(name: string, n: number): Int32Array {
    return take(this.i32s, name, n, newI32);
  }
}

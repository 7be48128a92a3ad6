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
interface Slot<A> {
  buf: A;
  view: A;
}

export class Workspace {
  private readonly f32s = new Map<string, Slot<Float32Array>>();
  private readonly i32s = new Map<string, Slot<Int32Array>>();

  /** A Float32Array of exactly `n` elements for `name` (contents unspecified). */
  f32(name: string, n: number): Float32Array {
    let s = this.f32s.get(name);
    if (s === undefined || s.buf.length < n) {
      const buf = new Float32Array(n);
      s = { buf, view: buf };
      this.f32s.set(name, s);
    } else if (s.view.length !== n) s.view = s.buf.subarray(0, n);
    return s.view;
  }

  /** An Int32Array of exactly `n` elements for `name` (contents unspecified). */
  i32(name: string, n: number): Int32Array {
    let s = this.i32s.get(name);
    if (s === undefined || s.buf.length < n) {
      const buf = new Int32Array(n);
      s = { buf, view: buf };
      this.i32s.set(name, s);
    } else if (s.view.length !== n) s.view = s.buf.subarray(0, n);
    return s.view;
  }
}

/** Streaming UTF-8 decoding of token byte pieces: never emits a broken (partial) character. */

/** Length of the longest prefix of `b` that does not end inside an incomplete UTF-8 sequence. */
export function completeUtf8Prefix(b: Uint8Array): number {
  // look back at most 3 bytes for the start of a sequence that is still missing continuation bytes
  for (let back = 1; back <= Math.min(3, b.length); back++) {
    const c = b[b.length - back];
    if ((c & 0xc0) === 0x80) continue; // continuation byte: keep looking for the lead
    const need = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xc2 && c <= 0xdf ? 2 : 1;
    return need > back ? b.length - back : b.length;
  }
  return b.length;
}

export interface StreamDecoder {
  /** bytes of one more token; returns the text that became complete */
  push(id: number): string;
  /** whatever is left (an incomplete tail decodes to U+FFFD) */
  flush(): string;
}

export function makeStreamDecoder(tokenBytes: (id: number) => Uint8Array): StreamDecoder {
  const dec = new TextDecoder('utf-8', { ignoreBOM: true });
  let pending = new Uint8Array(0);
  return {
    push(id: number): string {
      const piece = tokenBytes(id);
      if (piece.length === 0) return '';
      const all = new Uint8Array(pending.length + piece.length);
      all.set(pending);
      all.set(piece, pending.length);
      const n = completeUtf8Prefix(all);
      pending = all.slice(n);
      return n ? dec.decode(all.subarray(0, n)) : '';
    },
    flush(): string {
      const s = pending.length ? dec.decode(pending) : '';
      pending = new Uint8Array(0);
      return s;
    },
  };
}

/**
 * GPT-2's byte <-> unicode-character table (openai/gpt-2 `bytes_to_unicode`, llama.cpp
 * `unicode_byte_to_utf8`): printable Latin-1 bytes map to themselves, the other 68 bytes to
 * U+0100 + n in byte order. Byte-level BPE token strings are written in these characters.
 */

const B2U: string[] = [];
const U2B = new Map<string, number>();
{
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const ch = String.fromCodePoint(printable(b) ? b : 256 + n++);
    B2U[b] = ch;
    U2B.set(ch, b);
  }
}

/** The character that stands for byte `b` in a byte-level token string. */
export function byteToUnicode(b: number): string {
  return B2U[b];
}

/** The byte a byte-level character stands for, or undefined if `ch` is not one of the 256. */
export function unicodeToByte(ch: string): number | undefined {
  return U2B.get(ch);
}

/** Byte-level encoding of UTF-8 bytes. */
export function bytesToByteLevel(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += B2U[b];
  return s;
}

/** Bytes of a byte-level token string; characters outside the table are kept as their UTF-8 bytes. */
export function byteLevelToBytes(s: string): Uint8Array {
  const out: number[] = [];
  for (const ch of s) {
    const b = U2B.get(ch);
    if (b !== undefined) out.push(b);
    else out.push(...new TextEncoder().encode(ch));
  }
  return Uint8Array.from(out);
}

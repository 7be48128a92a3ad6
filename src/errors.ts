/**
 * Typed errors raised at moekit's boundaries (files, flags, requests).
 * Every message names the file / tensor / field at fault and says what to do.
 * Inside the engine, invariants are plain `assert`s: they indicate bugs, not bad input.
 */
export class MoekitError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** A model file or folder is malformed: bad magic, truncated data, bad header, missing or extra tensors, wrong shapes. */
export class CheckpointError extends MoekitError {
  constructor(
    readonly file: string,
    detail: string,
    readonly extra: { tensor?: string; offset?: number; key?: string } = {},
  ) {
    super(`${file}: ${detail}`);
  }
}

/** Valid input that moekit does not support (yet): an architecture, a tensor type, a tokenizer model. */
export class UnsupportedError extends MoekitError {}

/** A tensor's shape does not match what the architecture expects. */
export class ShapeError extends CheckpointError {}

/** A prompt or request does not fit: prompt longer than the context, too many sequences, ... */
export class ContextOverflowError extends MoekitError {}

/** Nonsense command-line flags or API options. */
export class UsageError extends MoekitError {}

/** Tokenizer data missing or malformed. */
export class TokenizerError extends MoekitError {}

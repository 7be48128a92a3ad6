/** Chat templates: the model's own jinja template, rendered with @huggingface/jinja. */
import { Template } from '@huggingface/jinja';
import { UsageError } from '../errors.js';

export interface ChatMessage {
  role: string;
  content: string;
}

export interface ChatTemplateOptions {
  /** end with the assistant-turn prefix so the model answers next */
  addGenerationPrompt?: boolean;
  bosToken?: string;
  eosToken?: string;
  /** extra template variables (tools, enable_thinking, ...) */
  extra?: Record<string, unknown>;
}

const compiled = new Map<string, Template>();

export function applyChatTemplate(template: string, messages: ChatMessage[], opts: ChatTemplateOptions = {}): string {
  let t = compiled.get(template);
  if (!t) {
    try {
      t = new Template(template);
    } catch (e) {
      throw new UsageError(`chat template does not parse: ${(e as Error).message}; check tokenizer.chat_template / chat_template`);
    }
    compiled.set(template, t);
  }
  try {
    return t.render({
      messages,
      add_generation_prompt: opts.addGenerationPrompt ?? false,
      bos_token: opts.bosToken ?? '',
      eos_token: opts.eosToken ?? '',
      ...opts.extra,
    });
  } catch (e) {
    throw new UsageError(`chat template failed to render: ${(e as Error).message}`);
  }
}

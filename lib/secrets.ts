// Secrets: every registered value is replaced by *** wherever lifeboat prints.
//
// Settings marked `secret` register themselves; helpers register passwords they read
// from files or commands. The logger, error printer and dry-run printer all pass text
// through `redact`, so a secret cannot reach a log line by any path lifeboat controls.

const MASK = "***";

/** A set of secret values and the function that masks them. */
export class Secrets {
  #values = new Set<string>();
  #pattern: RegExp | null = null;

  /** Registers a secret value (and its trimmed form); empty values are ignored. */
  add(value: string | undefined | null): void {
    if (!value) return;
    for (const v of new Set([value, value.trim()])) {
      if (v.length > 0 && !this.#values.has(v)) {
        this.#values.add(v);
        this.#pattern = null;
      }
    }
  }

  /** How many distinct values are registered. */
  get size(): number {
    return this.#values.size;
  }

  /** Masks every registered secret, and passwords in URLs (`user:pass@host`), with `mask` (default ***). */
  redact(text: string, mask: string = MASK): string {
    // The password runs to the last "@" before the host (one written unencoded may hold "@", "#"
    // or "?"), and never past a quote, a comma or a bracket (a URL inside JSON or a message).
    let out = text.replace(/(\b[a-z][a-z0-9+.-]{0,31}:\/\/[^\s:/@"'<>,]*:)([^\s/"'<>,]*)(@)/gi, `$1${mask}$3`);
    if (this.#values.size === 0) return out;
    if (!this.#pattern) {
      const sorted = [...this.#values].sort((a, b) => b.length - a.length);
      this.#pattern = new RegExp(sorted.map(escapeRegExp).join("|"), "g");
    }
    out = out.replace(this.#pattern, mask);
    return out;
  }
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * The text with the credentials of every URL in it taken out (`scheme://user:pass@host` →
 * `scheme://host`): for what is derived from a URL and kept, such as folder and lock names, a
 * journal's target or a manifest, where masking would still leave a user name.
 * @example withoutCredentials("http://admin:hunter2@xenon:8000") // "http://xenon:8000"
 */
export function withoutCredentials(text: string): string {
  return text.replace(/(\b[a-z][a-z0-9+.-]{0,31}:\/\/)[^\s/"'<>,]*@/gi, "$1");
}

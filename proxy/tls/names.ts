// TLS server-name matching, shared by termination (sni.ts) and passthrough (passthrough.ts): exact names beat
// wildcards, and "*.example.com" covers exactly one label (RFC 6125 §6.4.3), as certificate wildcards do.

/** Lower-cases and drops one trailing dot; returns undefined for names that cannot be a DNS name. */
export function normalizeServerName (name: string | undefined): string | undefined {
  if (name === undefined || name.length === 0 || name.length > 254) return undefined
  let n = name.toLowerCase()
  if (n.endsWith('.')) n = n.slice(0, -1)
  if (n.length === 0 || n.length > 253) return undefined
  for (let i = 0; i < n.length; i++) {
    const c = n.charCodeAt(i)
    // a-z 0-9 - . _ and '*' (only meaningful in patterns; a client name with '*' simply matches nothing).
    if (!((c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 45 || c === 46 || c === 95 || c === 42)) return undefined
  }
  return n
}

/** True for a pattern "*.rest" where rest has at least two labels and no further '*'. */
export function isWildcardPattern (pattern: string): boolean {
  return pattern.startsWith('*.') && pattern.indexOf('*', 1) === -1 && pattern.indexOf('.', 2) > 2
}

/** The wildcard pattern that would cover `name` ("a.b.c" → "*.b.c"), or undefined for single-label names. */
export function wildcardOf (name: string): string | undefined {
  const dot = name.indexOf('.')
  if (dot <= 0 || dot === name.length - 1) return undefined
  return `*${name.slice(dot)}`
}

/** A `match.sni` pattern (normalized: exact or one-label wildcard) against a normalized client name. */
export function sniMatches (pattern: string, name: string | undefined): boolean {
  if (name === undefined) return false
  if (pattern === name) return true
  return pattern.charCodeAt(0) === 42 && wildcardOf(name) === pattern
}

/** The normalized server name a TLS socket's client sent; undefined for plain sockets or no SNI. */
export function sniOf (socket: unknown): string | undefined {
  const s = (socket as { servername?: unknown } | null | undefined)?.servername
  return typeof s === 'string' ? normalizeServerName(s) : undefined
}

/**
 * A name → value table with exact and one-label wildcard entries. The first value registered for a name wins, so
 * callers control precedence by insertion order. Lookups do no allocation beyond one string slice.
 */
export class NameTable<T> {
  readonly #exact = new Map<string, T>()
  readonly #wildcard = new Map<string, T>()

  /** Adds a name or "*.suffix" pattern; returns false if the pattern is invalid or already present. */
  add (pattern: string, value: T): boolean {
    const p = normalizeServerName(pattern)
    if (p === undefined) return false
    if (p.includes('*')) {
      if (!isWildcardPattern(p) || this.#wildcard.has(p)) return false
      this.#wildcard.set(p, value)
      return true
    }
    if (this.#exact.has(p)) return false
    this.#exact.set(p, value)
    return true
  }

  /** Exact match first, then the one-label wildcard. `name` must already be normalized. */
  lookup (name: string | undefined): T | undefined {
    if (name === undefined) return undefined
    const exact = this.#exact.get(name)
    if (exact !== undefined) return exact
    if (this.#wildcard.size === 0) return undefined
    const w = wildcardOf(name)
    return w === undefined ? undefined : this.#wildcard.get(w)
  }

  get size (): number { return this.#exact.size + this.#wildcard.size }
}

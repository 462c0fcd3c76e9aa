// TLS server-name matching, shared by termination (sni.ts) and passthrough (passthrough.ts): exact names beat
// wildcards, and "*.example.com" covers exactly one label (RFC 6125 §6.4.3), as certificate wildcards do.
// What a valid name or pattern is lives in config/names.ts (the config checks match.sni with it).
import { isWildcardPattern, normalizeServerName } from '../../config/names.js'

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

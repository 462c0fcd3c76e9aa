// Which names a tunnel may claim, and finding the sessions that serve a host.
// A pattern "*.tunnel.test" matches one or more labels in front of "tunnel.test" (not the apex); "*" matches all.

export function normalizeName (name: string): string {
  const n = name.toLowerCase()
  return n.endsWith('.') ? n.slice(0, -1) : n
}

/** Does the host (no wildcard) match the pattern? */
export function matchName (pattern: string, host: string): boolean {
  if (pattern === '*') return true
  if (pattern.startsWith('*.')) return host.length > pattern.length - 1 && host.endsWith(pattern.slice(1))
  return pattern === host
}

/** Is every host matched by `inner` also matched by `outer`? (inner may be a wildcard) */
export function covers (outer: string, inner: string): boolean {
  if (!inner.startsWith('*.')) return matchName(outer, inner)
  if (outer === '*') return true
  if (!outer.startsWith('*.')) return false
  const innerSuffix = inner.slice(2)
  const outerSuffix = outer.slice(2)
  return innerSuffix === outerSuffix || innerSuffix.endsWith(`.${outerSuffix}`)
}

/**
 * The names a session gets: those of `requested` covered both by some token name and by some allow pattern.
 * A token's wildcard name only counts if an allow pattern covers it whole.
 */
export function grantNames (tokenNames: readonly string[], allow: readonly string[], requested: readonly string[]): { granted: string[], refused: string[] } {
  const tokenOk = tokenNames.map(normalizeName).filter(t => allow.some(a => covers(normalizeName(a), t)))
  const granted: string[] = []
  const refused: string[] = []
  for (const r of requested) {
    const n = normalizeName(r)
    if (tokenOk.some(t => covers(t, n))) granted.push(n)
    else refused.push(n)
  }
  return { granted, refused }
}

/** Name → values, exact names first, then the most specific wildcard. */
export class NameTable<V> {
  private readonly map = new Map<string, Set<V>>()

  add (name: string, v: V): boolean {
    let set = this.map.get(name)
    if (set === undefined) { set = new Set(); this.map.set(name, set) }
    const had = set.has(v)
    set.add(v)
    return !had
  }

  delete (name: string, v: V): boolean {
    const set = this.map.get(name)
    if (set === undefined || !set.delete(v)) return false
    if (set.size === 0) this.map.delete(name)
    return true
  }

  /** The values for a host: an exact entry wins, else "*.rest" walking labels off the left, else "*". */
  lookup (host: string): ReadonlySet<V> | undefined {
    const k = this.key(host)
    return k === undefined ? undefined : this.map.get(k)
  }

  /** The name (exact or wildcard) whose entry serves a host, as lookup() picks it. */
  key (host: string): string | undefined {
    const h = normalizeName(host)
    if (this.map.has(h)) return h
    for (let i = h.indexOf('.'); i >= 0; i = h.indexOf('.', i + 1)) {
      const w = `*${h.slice(i)}`
      if (this.map.has(w)) return w
    }
    return this.map.has('*') ? '*' : undefined
  }

  names (): string[] { return [...this.map.keys()] }
}

// Groups request paths into endpoints for the shadow's counts and reports: the first of the configured patterns
// that matches ("/users/:id" takes one segment per parameter, a last "*" takes the rest), else the path with its
// id-like segments (numbers, UUIDs, long hex) written ":id", so /orders/17 and /orders/18 still count together.
// Patterns are compiled once per config generation; matching walks segments, no regex per request.

interface Compiled {
  readonly text: string
  /** A literal segment, null for a parameter, '*' for the rest. */
  readonly segs: readonly (string | null)[]
}

const idLike = /^(?:\d+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{16,})$/i

export class EndpointMatcher {
  readonly #patterns: readonly Compiled[]

  constructor (patterns: readonly string[]) {
    this.#patterns = patterns.map(text => ({ text, segs: text.split('/').slice(1).map(s => s.startsWith(':') ? null : s) }))
  }

  /** The endpoint a path (query and all) belongs to. */
  match (path: string): string {
    const q = path.indexOf('?')
    const p = q === -1 ? path : path.slice(0, q)
    const segs = p.split('/').slice(1)
    for (const c of this.#patterns) if (fits(c.segs, segs)) return c.text
    let out = ''
    for (const s of segs) out += `/${idLike.test(s) ? ':id' : s}`
    return out === '' ? '/' : out
  }
}

function fits (pattern: readonly (string | null)[], segs: readonly string[]): boolean {
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]
    if (p === '*' && i === pattern.length - 1) return true
    const s = segs[i]
    if (s === undefined) return false
    if (p === null) { if (s === '') return false; continue }
    if (p !== s) return false
  }
  return pattern.length === segs.length
}

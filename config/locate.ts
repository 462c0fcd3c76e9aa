// Best-effort: find the line of a key path in TOML text, so errors can say "proxy.toml:12".
// smol-toml reports positions only for syntax errors, so for semantic errors we scan table headers.

type PathItem = string | number

interface Header { line: number, names: string[], array: boolean }

function headers (lines: string[]): Header[] {
  const out: Header[] = []
  for (let i = 0; i < lines.length; i++) {
    const m = /^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$/.exec(lines[i] as string)
    if (m === null) continue
    out.push({ line: i + 1, names: splitKey(m[2] as string), array: m[1] === '[[' })
  }
  return out
}

function splitKey (key: string): string[] {
  const parts: string[] = []
  const re = /\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*(?:\.|$)/y
  let m: RegExpExecArray | null
  while ((m = re.exec(key)) !== null) {
    parts.push(m[1] ?? m[2] ?? m[3] ?? '')
    if (re.lastIndex >= key.length) break
  }
  return parts
}

/** Returns the 1-based line that defines `path`, or the closest enclosing table, or undefined. */
export function locate (text: string, path: readonly PathItem[]): number | undefined {
  const lines = text.split(/\r?\n/)
  const hs = headers(lines)
  // Turn the path into (table names, array index) steps and find the deepest matching header.
  let best: { header: Header, depth: number } | undefined
  for (let depth = path.length; depth >= 1 && best === undefined; depth--) {
    const prefix = path.slice(0, depth)
    const names = prefix.filter((p): p is string => typeof p === 'string')
    const lastIsIndex = typeof prefix[prefix.length - 1] === 'number'
    if (lastIsIndex) {
      // [[routes]] #N
      const idx = prefix[prefix.length - 1] as number
      const matching = hs.filter(h => h.array && h.names.join('.') === names.join('.'))
      const h = matching[idx]
      if (h !== undefined) best = { header: h, depth }
    } else {
      const h = hs.find(h => !h.array && h.names.join('.') === names.join('.'))
      if (h !== undefined) best = { header: h, depth }
    }
  }
  const rest = best === undefined ? path : path.slice(best.depth)
  const start = best === undefined ? 0 : best.header.line
  const end = (() => {
    if (best === undefined) return hs[0] === undefined ? lines.length : hs[0].line - 1
    const next = hs.find(h => h.line > start)
    return next === undefined ? lines.length : next.line - 1
  })()
  const key = rest.find((p): p is string => typeof p === 'string')
  if (key !== undefined) {
    // Dotted keys ("match.host = ...") or a plain key, within the table's lines.
    const dotted = rest.filter((p): p is string => typeof p === 'string').join('.')
    for (const k of [dotted, key]) {
      for (let i = start; i < end; i++) {
        const l = (lines[i] as string).trimStart()
        if (l.startsWith(k) && /^\s*(=|\.|"|\s)/.test(l.slice(k.length))) return i + 1
      }
    }
    // An inline table: "respond = { status = 404 }" — look for the key anywhere on a line.
    for (let i = start; i < end; i++) {
      if (new RegExp(`[{,\\s]${key.replace(/[^A-Za-z0-9_]/g, '\\$&')}\\s*=`).test(lines[i] as string)) return i + 1
    }
  }
  return best?.header.line
}

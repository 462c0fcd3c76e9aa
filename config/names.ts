// What a TLS server name and a server-name pattern are: the config checks `match.sni` with these, and
// proxy/tls/names.ts matches client names with them. Patterns "*.example.com" cover exactly one label.

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

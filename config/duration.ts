// Durations are written as "150ms", "2s", "5m", "1h", "30d" or combined ("1m30s"); everything inside is milliseconds.

const unitMs: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
const part = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/y

/** Returns milliseconds, or undefined when the text is not a duration. */
export function parseDuration (text: string): number | undefined {
  const s = text.trim()
  if (s === '' ) return undefined
  if (s === '0') return 0
  let total = 0
  part.lastIndex = 0
  while (part.lastIndex < s.length) {
    const start = part.lastIndex
    const m = part.exec(s)
    if (m === null || m.index !== start) return undefined
    total += Number(m[1]) * (unitMs[m[2] as string] as number)
  }
  return Math.round(total)
}

// wrk, when installed: run it and parse its text output (it has no machine-readable format without Lua).
import type { LoadResult } from './result.js'

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 }
// wrk prints sizes with binary multiples: "1.75MB" is 1.75 × 2^20 bytes.
const UNIT_BYTES: Record<string, number> = { B: 1, KB: 2 ** 10, MB: 2 ** 20, GB: 2 ** 30, TB: 2 ** 40 }

function toMs (v: string | undefined, unit: string | undefined): number {
  if (v === undefined || unit === undefined) return Number.NaN
  return Number(v) * (UNIT_MS[unit] ?? Number.NaN)
}

/** Parses `wrk --latency` output. `cpuMs` is filled in by the caller (wrk does not report it). */
export function parseWrk (text: string): Omit<LoadResult, 'cpuMs'> {
  const total = /^\s*(\d+) requests in ([\d.]+)(us|ms|s|m), ([\d.]+)(B|KB|MB|GB|TB) read/m.exec(text)
  if (total === null) throw new Error(`cannot parse wrk output:\n${text}`)
  const requests = Number(total[1])
  const durationS = toMs(total[2], total[3]) / 1000
  const p50 = /^\s*50%\s+([\d.]+)(us|ms|s|m)\s*$/m.exec(text)
  const p99 = /^\s*99%\s+([\d.]+)(us|ms|s|m)\s*$/m.exec(text)
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text)
  const bad = /Non-2xx or 3xx responses: (\d+)/.exec(text)
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(text)
  return {
    tool: 'wrk',
    requests,
    durationS,
    rps: rps === null ? requests / durationS : Number(rps[1]),
    p50: toMs(p50?.[1], p50?.[2]),
    p99: toMs(p99?.[1], p99?.[2]),
    errors: sock === null ? 0 : sock.slice(1).reduce((a, b) => a + Number(b), 0),
    non2xx: bad === null ? 0 : Number(bad[1]),
    bytes: Math.round(Number(total[4]) * (UNIT_BYTES[total[5] as string] ?? Number.NaN)),
  }
}

/**
 * wrk's arguments: one thread (like autocannon) so the load generator's share of the 2 cores is comparable.
 * For https URLs wrk (built with OpenSSL, as Debian's is) does a full handshake per connection and does not
 * verify the certificate.
 */
export function wrkArgs (url: string, connections: number, durationS: number, close: boolean, host?: string): string[] {
  return ['-t1', `-c${connections}`, `-d${durationS}s`, '--latency', '--timeout', '10s', ...(close ? ['-H', 'Connection: close'] : []), ...(host === undefined ? [] : ['-H', `Host: ${host}`]), url]
}

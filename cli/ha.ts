// `edge-proxy ha status`: this node's HA role, its peers, the floating IP's holder and the transitions, from a
// running edge's admin API (GET /api/ha).
import { parseArgs } from 'node:util'

export const HA_HELP = `Usage: edge-proxy ha status [--admin HOST:PORT] [--token T] [--json]

  --admin HOST:PORT  the edge's admin listener (default 127.0.0.1:9901)
  --token T          the [admin] token (default: $EDGE_PROXY_ADMIN_TOKEN)
  --json             print GET /api/ha as it is

Prints the role, the peers (role, priority, last advert, config hash), the floating IP's holder and the
transitions with their reasons. Exit status: 0 done, 1 unreachable or standalone, 2 usage error.
`

interface Peer { node_id: string, address: string, role: string, priority: number, last_advert_ms_ago: number, config_hash: string, config_mismatch: boolean }
interface Status {
  role: string, node_id: string, priority: number, preempt: boolean, since: string, reason: string, ip_mode: string
  floating_ip?: string, interface?: string, holder?: string, config_hash: string, config_mismatch: string[]
  peers: Peer[], transitions: { time: string, from: string, to: string, reason: string }[]
  heartbeats: { accepted: number, dropped: Record<string, number> }
  replenish?: { min_spares: number, spares: number, state: string, attempts: number }
}

export async function runHaCommand (argv: string[], out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): Promise<number> {
  let values: { admin?: string, token?: string, json?: boolean, help?: boolean }
  let positionals: string[]
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      options: { admin: { type: 'string' }, token: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: true,
    }))
  } catch (e) {
    return usage(err, (e as Error).message)
  }
  if (values.help === true) { out.write(HA_HELP); return 0 }
  if (positionals.length !== 1 || positionals[0] !== 'status') return usage(err, positionals[0] === undefined ? 'say status' : `unknown action "${positionals.join(' ')}"`)
  const admin = values.admin ?? '127.0.0.1:9901'
  const base = `http://${admin.includes('://') ? admin.slice(admin.indexOf('://') + 3) : admin}`
  const token = values.token ?? process.env.EDGE_PROXY_ADMIN_TOKEN
  const headers: Record<string, string> = {}
  if (token !== undefined && token !== '') headers.authorization = `Bearer ${token}`
  let res: Response
  try {
    res = await fetch(`${base}/api/ha`, { headers, signal: AbortSignal.timeout(5000) })
  } catch (e) {
    const cause = (e as Error & { cause?: Error }).cause
    err.write(`edge-proxy ha: cannot reach the admin API at ${base}: ${cause?.message ?? (e as Error).message}\n`)
    return 1
  }
  const text = await res.text()
  if (!res.ok) {
    let message = text.trim()
    try { message = (JSON.parse(text) as { error?: string }).error ?? message } catch { /* not JSON */ }
    err.write(`edge-proxy ha status: ${res.status}: ${message}\n`)
    return 1
  }
  if (values.json === true) { out.write(text.endsWith('\n') ? text : `${text}\n`); return 0 }
  out.write(formatHaStatus(JSON.parse(text) as Status))
  return 0
}

export function formatHaStatus (s: Status): string {
  const lines = [
    `node ${s.node_id}: ${s.role.toUpperCase()} since ${s.since} (${s.reason})`,
    `  priority ${s.priority}${s.preempt ? ', preempt' : ''}; ${s.ip_mode === 'linux' ? `floating IP ${s.floating_ip ?? ''} on ${s.interface ?? ''}` : 'IP moved by command'}; holder: ${s.holder ?? 'none'}`,
    `  config hash ${s.config_hash}${s.config_mismatch.length > 0 ? `; MISMATCH with ${s.config_mismatch.join(', ')}` : ''}`,
    `  heartbeats accepted ${s.heartbeats.accepted}, dropped ${Object.entries(s.heartbeats.dropped).map(([k, v]) => `${k} ${v}`).join(', ')}`,
  ]
  if (s.replenish !== undefined) lines.push(`  spares ${s.replenish.spares} of ${s.replenish.min_spares} (replenish ${s.replenish.state}, ${s.replenish.attempts} attempt(s))`)
  lines.push('', 'peers:')
  if (s.peers.length === 0) lines.push('  (none heard)')
  const rows = [['NODE', 'ADDRESS', 'ROLE', 'PRIORITY', 'LAST ADVERT', 'CONFIG'], ...s.peers.map(p => [
    p.node_id, p.address, p.role, String(p.priority), `${(p.last_advert_ms_ago / 1000).toFixed(1)}s ago`, `${p.config_hash}${p.config_mismatch ? ' (mismatch)' : ''}`,
  ])]
  if (s.peers.length > 0) {
    const widths = rows[0]?.map((_, i) => Math.max(...rows.map(r => (r[i] as string).length))) ?? []
    for (const r of rows) lines.push(`  ${r.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd()}`)
  }
  lines.push('', 'transitions (newest first):')
  if (s.transitions.length === 0) lines.push('  (none yet)')
  for (const t of s.transitions) lines.push(`  ${t.time}  ${t.from} -> ${t.to}  ${t.reason}`)
  return `${lines.join('\n')}\n`
}

function usage (err: NodeJS.WritableStream, message: string): number {
  err.write(`edge-proxy ha: ${message}\n\n${HA_HELP}`)
  return 2
}

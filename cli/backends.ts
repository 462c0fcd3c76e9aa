// `edge-proxy backends add|remove|list`: runtime registration through a running edge's admin API.
import { parseArgs } from 'node:util'
import { parseDuration } from '../config/duration.js'
import { BACKEND_WEIGHT } from '../config/schema.js'

export const BACKENDS_HELP = `Usage: edge-proxy backends add    [--admin HOST:PORT] [--token T] [--weight N] POOL URL
       edge-proxy backends remove [--admin HOST:PORT] [--token T] [--drain 30s] POOL URL
       edge-proxy backends list   [--admin HOST:PORT] [--token T] POOL

  --admin HOST:PORT  the edge's admin listener (default 127.0.0.1:9901)
  --token T          the [admin] token (default: $EDGE_PROXY_ADMIN_TOKEN)
  --weight N         add: the member's weight, 1 to 1000 (default 1)
  --drain DURATION   remove: how long in-flight requests may finish before the member goes (default 30s)

Members added here take traffic at once (after their first health check passes, if the pool has checks), outlive
config reloads, and are gone when the edge stops. Members from the config file are removed by editing the file.
Exit status: 0 done, 1 refused by the edge (its message is printed) or unreachable, 2 usage error.
`

interface Member { url: string, weight: number, source: string, state: string }

export async function runBackendsCommand (argv: string[], out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): Promise<number> {
  let values: { admin?: string, token?: string, weight?: string, drain?: string, help?: boolean }
  let positionals: string[]
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      options: { admin: { type: 'string' }, token: { type: 'string' }, weight: { type: 'string' }, drain: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: true,
    }))
  } catch (e) {
    return usage(err, (e as Error).message)
  }
  if (values.help === true) { out.write(BACKENDS_HELP); return 0 }
  const [action, pool, url, ...extra] = positionals
  if (action !== 'add' && action !== 'remove' && action !== 'list') return usage(err, action === undefined ? 'say add, remove or list' : `unknown action "${action}"`)
  if (pool === undefined || pool === '') return usage(err, 'POOL is required')
  if (action === 'list' ? url !== undefined : url === undefined || extra.length > 0) return usage(err, action === 'list' ? 'list takes only POOL' : `${action} takes POOL and URL`)
  if (values.weight !== undefined && action !== 'add') return usage(err, '--weight goes with add')
  if (values.drain !== undefined && action !== 'remove') return usage(err, '--drain goes with remove')
  let weight: number | undefined
  if (values.weight !== undefined) {
    weight = Number(values.weight)
    if (!/^\d+$/.test(values.weight) || weight < BACKEND_WEIGHT.min || weight > BACKEND_WEIGHT.max) return usage(err, `--weight "${values.weight}" is not an integer from ${BACKEND_WEIGHT.min} to ${BACKEND_WEIGHT.max}`)
  }
  if (values.drain !== undefined && parseDuration(values.drain) === undefined) return usage(err, `--drain "${values.drain}" is not a duration like 30s`)
  const admin = values.admin ?? '127.0.0.1:9901'
  const base = `http://${admin.includes('://') ? admin.slice(admin.indexOf('://') + 3) : admin}`
  const token = values.token ?? process.env.EDGE_PROXY_ADMIN_TOKEN
  const headers: Record<string, string> = { 'content-type': 'application/json' }
  if (token !== undefined && token !== '') headers.authorization = `Bearer ${token}`
  const path = `/api/pools/${encodeURIComponent(pool)}/backends`
  let res: Response
  try {
    if (action === 'add') {
      res = await fetch(`${base}${path}`, { method: 'POST', headers, body: JSON.stringify({ url, ...(weight === undefined ? {} : { weight }) }) })
    } else if (action === 'remove') {
      const q = values.drain === undefined ? '' : `?drain=${encodeURIComponent(values.drain)}`
      res = await fetch(`${base}${path}/${encodeURIComponent(url as string)}${q}`, { method: 'DELETE', headers })
    } else {
      res = await fetch(`${base}${path}`, { headers })
    }
  } catch (e) {
    const cause = (e as Error & { cause?: Error }).cause
    err.write(`edge-proxy backends: cannot reach the admin API at ${base}: ${cause?.message ?? (e as Error).message}\n`)
    return 1
  }
  const text = await res.text()
  let body: unknown
  try { body = JSON.parse(text) } catch { body = undefined }
  if (!res.ok) {
    const message = (body as { error?: string } | undefined)?.error ?? text.trim()
    err.write(`edge-proxy backends ${action}: ${res.status}: ${message}\n`)
    return 1
  }
  if (action === 'add') {
    const m = body as Member
    out.write(`added ${m.url} to pool ${pool} (weight ${m.weight}, ${m.state})\n`)
  } else if (action === 'remove') {
    out.write(`${(body as { message: string }).message}\n`)
  } else {
    const list = body as Member[]
    const rows = [['URL', 'WEIGHT', 'SOURCE', 'STATE'], ...list.map(m => [m.url, String(m.weight), m.source, m.state])]
    const widths = [0, 1, 2].map(i => Math.max(...rows.map(r => (r[i] as string).length)))
    for (const r of rows) out.write(`${r.map((c, i) => i < 3 ? c.padEnd(widths[i] as number) : c).join('  ')}\n`)
  }
  return 0
}

function usage (err: NodeJS.WritableStream, message: string): number {
  err.write(`edge-proxy backends: ${message}\n\n${BACKENDS_HELP}`)
  return 2
}

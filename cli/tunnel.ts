// `edge-proxy tunnel`: the backend side. Holds a session to each --edge and serves each --name from its --to.
import { parseArgs } from 'node:util'
import { TunnelClient, type TunnelRoute } from '../packer/client.js'
import { resolveSecret } from '../packer/token.js'
import type { Grant, Service } from '../packer/payload.js'

export const TUNNEL_HELP = `Usage: edge-proxy tunnel --edge URL [--edge URL ...] --token T --name NAME --to URL [--name NAME --to URL ...]

  --edge URL        ws:// or wss:// tunnel endpoint of an edge (repeatable: one session per edge)
  --token T         the token from "edge-proxy token" (or "env:NAME" / "file:PATH")
  --name NAME       a name to serve: "app.x.test" (http), "tls:db.x.test" (TLS passthrough by SNI), "tcp:..."
  --to URL          where that name's streams go: http://host:port or tcp://host:port (pairs with --name in order)
  --proxy-protocol 1|2   prefix tls/tcp connections with a PROXY protocol header carrying the client address
`

export function parseRoutes (names: readonly string[], tos: readonly string[], proxyProtocol?: 1 | 2): TunnelRoute[] {
  if (names.length === 0 || names.length !== tos.length) throw new Error('give each --name its own --to, in order')
  return names.map((raw, i) => {
    const m = /^(http|tls|tcp):(.+)$/.exec(raw)
    const to = tos[i]!
    const service: Service = m !== null ? m[1] as Service : to.startsWith('http://') ? 'http' : 'tcp'
    const route: TunnelRoute = { service, name: m !== null ? m[2]! : raw, to }
    if (proxyProtocol !== undefined && service !== 'http') route.proxyProtocol = proxyProtocol
    return route
  })
}

/** Runs until SIGINT/SIGTERM; resolves with the exit code. */
export async function runTunnelCommand (argv: string[], err: NodeJS.WritableStream = process.stderr): Promise<number> {
  let values: { edge?: string[], token?: string, name?: string[], to?: string[], 'proxy-protocol'?: string, help?: boolean }
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        edge: { type: 'string', multiple: true },
        token: { type: 'string' },
        name: { type: 'string', multiple: true },
        to: { type: 'string', multiple: true },
        'proxy-protocol': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }))
  } catch (e) {
    err.write(`edge-proxy tunnel: ${(e as Error).message}\n\n${TUNNEL_HELP}`)
    return 2
  }
  if (values.help === true) { process.stdout.write(TUNNEL_HELP); return 0 }
  let client: TunnelClient
  try {
    if (values.edge === undefined || values.edge.length === 0) throw new Error('at least one --edge is required')
    if (values.token === undefined) throw new Error('--token is required')
    const pp = values['proxy-protocol']
    if (pp !== undefined && pp !== '1' && pp !== '2') throw new Error('--proxy-protocol must be 1 or 2')
    const routes = parseRoutes(values.name ?? [], values.to ?? [], pp === undefined ? undefined : Number(pp) as 1 | 2)
    const token = resolveSecret(values.token).toString('utf8')
    client = new TunnelClient({ edges: values.edge, token, routes })
  } catch (e) {
    err.write(`edge-proxy tunnel: ${(e as Error).message}\n\n${TUNNEL_HELP}`)
    return 2
  }
  client.on('session', (url: string, _s: unknown, grant: Grant) => {
    const granted = grant.granted.map(c => `${c.service}:${c.name}`).join(', ') || 'nothing'
    const refused = grant.refused.length > 0 ? `; refused ${grant.refused.map(c => `${c.service}:${c.name}`).join(', ')}` : ''
    err.write(`tunnel: connected to ${url}: granted ${granted}${refused}\n`)
  })
  let draining = false
  client.on('disconnect', (url: string) => { err.write(`tunnel: lost ${url}${draining ? '' : ', reconnecting'}\n`) })
  client.on('goaway', (url: string, why: string) => { err.write(`tunnel: ${url} is going away${why === '' ? '' : ` (${why})`}; reconnecting at once\n`) })
  client.on('dial-error', (url: string, e: Error) => { err.write(`tunnel: ${url}: ${e.message}\n`) })
  client.on('refused', (url: string, e: Error) => { err.write(`edge-proxy tunnel: ${url}: ${e.message}; not retrying (exit 2)\n`) })
  client.start()
  const stop = await new Promise<'signal' | 'refused'>(resolve => {
    process.once('SIGINT', () => { resolve('signal') })
    process.once('SIGTERM', () => { resolve('signal') })
    client.on('refused', () => { resolve('refused') })
  })
  if (stop === 'refused') { await client.close(); return 2 }
  draining = true
  err.write('tunnel: draining\n')
  await client.drain()
  return 0
}

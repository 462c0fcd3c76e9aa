// Shared setup for the packer tests: an edge TunnelServer, a TunnelClient, and loopback TCP targets.
import type { TestContext } from 'node:test'
import { once } from 'node:events'
import { createServer, type Server, type Socket, type AddressInfo } from 'node:net'
import { TunnelServer, type TunnelServerOptions } from '../packer/server.js'
import { TunnelClient, type TunnelClientOptions, type TunnelRoute } from '../packer/client.js'
import { signToken } from '../packer/token.js'
import type { Session } from '../packer/session.js'

export const SECRET = Buffer.from('test-secret-test-secret-0123456789')

export async function startEdge (t: TestContext, opts: Partial<TunnelServerOptions> = {}): Promise<{ edge: TunnelServer, url: string }> {
  const edge = new TunnelServer({ secret: SECRET, allow: ['*.tunnel.test'], ...opts })
  await edge.start()
  t.after(() => edge.close())
  return { edge, url: `ws://127.0.0.1:${edge.address().port}` }
}

export function token (names: string[], ttlMs = 60_000): string {
  return signToken({ sub: 'test', names, ttlMs }, SECRET)
}

export function startClient (t: TestContext, url: string | string[], routes: TunnelRoute[], opts: Partial<TunnelClientOptions> = {}): TunnelClient {
  const client = new TunnelClient({
    edges: Array.isArray(url) ? url : [url],
    token: token(routes.map(r => r.name)),
    routes,
    backoff: { minMs: 20, maxMs: 100 },
    ...opts,
  })
  client.start()
  t.after(() => client.close())
  return client
}

/** Resolves with the edge session once `name` is registered. */
export async function registered (edge: TunnelServer, name: string): Promise<Session> {
  const existing = edge.lookup(name)[0]
  if (existing !== undefined) return existing
  for (;;) {
    const [n, session] = await once(edge, 'register') as [string, Session]
    if (n === name) return session
  }
}

export async function tcpServer (t: TestContext, onConnection: (sock: Socket) => void): Promise<{ server: Server, port: number, sockets: Set<Socket> }> {
  const sockets = new Set<Socket>()
  const server = createServer({ allowHalfOpen: true }, sock => {
    sockets.add(sock)
    sock.on('close', () => sockets.delete(sock))
    sock.on('error', () => {})
    onConnection(sock)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => { for (const s of sockets) s.destroy(); server.close() })
  return { server, port: (server.address() as AddressInfo).port, sockets }
}

export const CLIENT = { family: 4 as const, address: '203.0.113.9', port: 40000 }

export function sleep (ms: number): Promise<void> { return new Promise(resolve => setTimeout(resolve, ms)) }

// Demo backends for `npm start`: a small HTTP (and WebSocket echo) server on every loopback backend URL of the
// config that nothing listens on yet, so curl through the proxy answers at once.
import http from 'node:http'
import { WebSocketServer } from 'ws'
import type { Config } from '../config/types.js'
import { isLoopback } from '../config/address.js'

export interface DemoBackends { readonly urls: string[], close (): Promise<void> }

export async function startDemoBackends (config: Config): Promise<DemoBackends> {
  const servers: http.Server[] = []
  const urls: string[] = []
  const seen = new Set<string>()
  for (const pool of config.pools.values()) {
    for (const b of pool.backends) {
      const u = new URL(b.url)
      if (u.protocol !== 'http:' || !isLoopback(u.hostname.replace(/^\[|\]$/g, '')) || seen.has(b.url)) continue
      seen.add(b.url)
      const server = demoServer(b.url, pool.name)
      const ok = await new Promise<boolean>(resolve => {
        server.once('error', () => { resolve(false) })
        server.listen(Number(u.port || 80), u.hostname.replace(/^\[|\]$/g, ''), () => { resolve(true) })
      })
      if (ok) { servers.push(server); urls.push(b.url) }
    }
  }
  return {
    urls,
    close: async () => {
      await Promise.all(servers.map(s => new Promise<void>(resolve => { s.close(() => { resolve() }); s.closeAllConnections() })))
    },
  }
}

export function demoServer (name: string, pool: string): http.Server {
  const server = http.createServer((req, res) => {
    let bytes = 0
    req.on('data', (d: Buffer) => { bytes += d.length })
    req.on('end', () => {
      const body = `${JSON.stringify({ backend: name, pool, method: req.method, path: req.url, host: req.headers.host, 'x-forwarded-for': req.headers['x-forwarded-for'], 'x-request-id': req.headers['x-request-id'], body_bytes: bytes })}\n`
      res.writeHead(200, { 'content-type': 'application/json', 'server-timing': 'app;dur=0.1', 'x-backend': name })
      res.end(body)
    })
  })
  // WebSocket echo, so `Upgrade` through the proxy can be tried by hand.
  const wss = new WebSocketServer({ server })
  wss.on('connection', ws => {
    ws.on('message', (data, isBinary) => { ws.send(data, { binary: isBinary }) })
  })
  return server
}

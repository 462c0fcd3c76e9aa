// Peer: the smallest undici proxy worth measuring: node:http in front, undici Pool.stream behind, hop-by-hop
// headers dropped and nothing else (no routing, no forwarded headers, no timing, no logging). It is the floor
// edge-proxy's own overhead is measured against.
//   node dist/bench/peers/undici-min.js PORT BACKEND_PORT [HTTPS_PORT CERT_FILE KEY_FILE]  (bench/serve.ts)
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'
import { Pool, type Dispatcher } from 'undici'
import { closeAll, serve } from '../serve.js'

const port = Number(process.argv[2])
const backendPort = Number(process.argv[3])
const pool = new Pool(`http://127.0.0.1:${backendPort}`, { connections: 256, pipelining: 1, keepAliveTimeout: 60_000 })

// undici refuses these as request headers; they are hop-by-hop anyway.
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection', 'te', 'trailer'])

function strip (headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const k in headers) {
    const v = headers[k]
    if (v !== undefined && !HOP.has(k)) out[k] = v
  }
  return out
}

// The response is the opaque value, so the factory is one shared function, not a closure per request.
function factory ({ statusCode, headers, opaque }: Dispatcher.StreamFactoryData<ServerResponse>): ServerResponse {
  opaque.writeHead(statusCode, strip(headers as IncomingHttpHeaders))
  return opaque
}

function done (this: ServerResponse, err: Error | null): void {
  if (err === null) return
  if (!this.headersSent) this.writeHead(502, { 'content-length': '0' }).end(); else this.destroy(err)
}

function handle (req: IncomingMessage, res: ServerResponse): void {
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined
  pool.stream({
    path: req.url ?? '/',
    method: req.method as Dispatcher.HttpMethod,
    headers: strip(req.headers),
    body: hasBody ? req : null,
    opaque: res,
  }, factory, done.bind(res))
}

const servers = serve(handle, port, process.argv.slice(4), { keepAliveTimeout: 120_000, requestTimeout: 0 })
process.on('SIGTERM', () => { closeAll(servers, async () => { await pool.close() }) })

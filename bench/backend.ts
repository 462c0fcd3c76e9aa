// The bench's origin server, run as its own process so its CPU is measured apart from the proxy's:
//   node dist/bench/backend.js PORT [HTTPS_PORT CERT_FILE KEY_FILE]
// GET /100b -> 100 bytes, GET /16k -> 16 KiB, GET /64m -> 64 MiB (streamed in 1 MiB writes, with backpressure),
// POST /upload -> reads the body (up to 2 MB), answers its length. With the TLS arguments it serves the same over
// https on HTTPS_PORT too (the "direct" figure of the https scenarios).
// Keep-alive with a long idle timeout so idle-connection and keep-alive scenarios are not cut short.
// BENCH_BACKEND_DELAY_MS=N delays every answer by N ms: the slow shadow backend of the shadow scenario.
import type { IncomingMessage, ServerResponse } from 'node:http'
import { closeAll, serve } from './serve.js'

const port = Number(process.argv[2])
if (!Number.isInteger(port) || port <= 0) {
  process.stderr.write('usage: node dist/bench/backend.js PORT [HTTPS_PORT CERT_FILE KEY_FILE]\n')
  process.exit(2)
}

const small = Buffer.alloc(100, 'a')
const large = Buffer.alloc(16 * 1024, 'b')
const chunk = Buffer.alloc(1024 * 1024, 'c')
const HUGE_CHUNKS = 64
const smallHeaders = { 'content-type': 'text/plain', 'content-length': String(small.length) }
const largeHeaders = { 'content-type': 'text/plain', 'content-length': String(large.length) }
const hugeHeaders = { 'content-type': 'application/octet-stream', 'content-length': String(chunk.length * HUGE_CHUNKS) }
const MAX_UPLOAD = 2 * 1024 * 1024

function upload (req: IncomingMessage, res: ServerResponse): void {
  let n = 0
  req.on('data', (chunk: Buffer) => {
    n += chunk.length
    if (n > MAX_UPLOAD) { res.writeHead(413, { connection: 'close' }).end(); req.destroy() }
  })
  req.on('end', () => {
    if (res.headersSent) return
    const body = `${n}\n`
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(body.length) }).end(body)
  })
}

/** 64 MiB from one shared 1 MiB buffer: the writes wait for 'drain', as a real server streaming a file would. */
function huge (res: ServerResponse): void {
  res.writeHead(200, hugeHeaders)
  let sent = 0
  const more = (): void => {
    while (sent < HUGE_CHUNKS) {
      sent++
      if (sent === HUGE_CHUNKS) { res.end(chunk); return }
      if (!res.write(chunk)) { res.once('drain', more); return }
    }
  }
  more()
}

function handle (req: IncomingMessage, res: ServerResponse): void {
  if (req.method === 'POST' && req.url === '/upload') { upload(req, res); return }
  if (req.url === '/100b') { res.writeHead(200, smallHeaders).end(small); return }
  if (req.url === '/16k') { res.writeHead(200, largeHeaders).end(large); return }
  if (req.url === '/64m') { huge(res); return }
  res.writeHead(404, { 'content-length': '0' }).end()
}

const delay = Number(process.env.BENCH_BACKEND_DELAY_MS ?? 0)
function delayed (req: IncomingMessage, res: ServerResponse): void {
  setTimeout(handle, delay, req, res)
}

const servers = serve(delay > 0 ? delayed : handle, port, process.argv.slice(3), { keepAliveTimeout: 120_000, requestTimeout: 0, headersTimeout: 60_000 })
process.on('SIGTERM', () => { closeAll(servers) })

// The bench's origin server, run as its own process so its CPU is measured apart from the proxy's:
//   node dist/bench/backend.js PORT
// GET /100b -> 100 bytes, GET /16k -> 16 KiB, POST /upload -> reads the body (up to 2 MB), answers its length.
// Keep-alive with a long idle timeout so idle-connection and keep-alive scenarios are not cut short.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'

const port = Number(process.argv[2])
if (!Number.isInteger(port) || port <= 0) {
  process.stderr.write('usage: node dist/bench/backend.js PORT\n')
  process.exit(2)
}

const small = Buffer.alloc(100, 'a')
const large = Buffer.alloc(16 * 1024, 'b')
const smallHeaders = { 'content-type': 'text/plain', 'content-length': String(small.length) }
const largeHeaders = { 'content-type': 'text/plain', 'content-length': String(large.length) }
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

const server = createServer({ keepAliveTimeout: 120_000, requestTimeout: 0, headersTimeout: 60_000 }, (req, res) => {
  if (req.method === 'POST' && req.url === '/upload') { upload(req, res); return }
  if (req.url === '/100b') { res.writeHead(200, smallHeaders).end(small); return }
  if (req.url === '/16k') { res.writeHead(200, largeHeaders).end(large); return }
  res.writeHead(404, { 'content-length': '0' }).end()
})
// 0 = unlimited requests per connection; explicit so that a changed default cannot skew results.
server.maxRequestsPerSocket = 0
server.listen(port, '127.0.0.1')
process.on('SIGTERM', () => { server.closeAllConnections(); server.close(() => { process.exit(0) }) })

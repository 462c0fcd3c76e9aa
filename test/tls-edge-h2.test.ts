// HTTP/2 on https listeners: h2 and h1 share the port and reach an HTTP/1.1 backend with the right Host and
// headers (no pseudo-headers leak); a gRPC-style exchange to an h2c:// backend carries the request body, te:
// trailers, and brings the response trailers (grpc-status) back to the client.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import http2 from 'node:http2'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { makePki } from './tls-fixtures.js'
import { echoBackend, silentToml, startEdge } from './tls-edge-util.js'

function h2request (client: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: Buffer): Promise<{ headers: http2.IncomingHttpHeaders, body: Buffer, trailers: http2.IncomingHttpHeaders | undefined }> {
  return new Promise((resolve, reject) => {
    const req = client.request(headers, { endStream: body === undefined })
    let resHeaders: http2.IncomingHttpHeaders = {}
    let trailers: http2.IncomingHttpHeaders | undefined
    const chunks: Buffer[] = []
    req.on('response', h => { resHeaders = h })
    req.on('trailers', h => { trailers = h })
    req.on('data', (d: Buffer) => chunks.push(d))
    req.on('end', () => { resolve({ headers: resHeaders, body: Buffer.concat(chunks), trailers }) })
    req.on('error', reject)
    if (body !== undefined) req.end(body)
  })
}

test('HTTP/2 and HTTP/1.1 on one https port reach an HTTP/1.1 backend with correct Host and headers', async t => {
  const pki = await makePki(t)
  await pki.issue(['app.example.com'])
  const backend = await echoBackend(t)
  const e = await startEdge(t, pki.dir, `${silentToml}
[[listeners]]
name = "s"
listen = "127.0.0.1:0"
protocol = "https"
certificates = [{ cert = "app.example.com.pem", key = "app.example.com.key" }]
[[routes]]
match.host = "app.example.com"
pool = "app"
[pools.app]
backends = ["http://127.0.0.1:${backend.port}"]
`)
  const port = e.port('s')
  const client = http2.connect(`https://127.0.0.1:${port}`, { ca: pki.ca.cert, servername: 'app.example.com' })
  t.after(() => { client.close() })
  const r = await h2request(client, { ':method': 'POST', ':path': '/h2?q=1', ':authority': 'app.example.com', 'x-custom': 'yes' }, Buffer.alloc(100_000, 7))
  assert.equal(r.headers[':status'], 200)
  assert.equal(r.headers.connection, undefined)
  const seen = JSON.parse(r.body.toString()) as { method: string, url: string, headers: Record<string, string>, rawHeaders: string[], bytes: number }
  assert.equal(seen.method, 'POST')
  assert.equal(seen.url, '/h2?q=1')
  assert.equal(seen.headers.host, 'app.example.com')
  assert.equal(seen.headers['x-custom'], 'yes')
  assert.equal(seen.headers['x-forwarded-proto'], 'https')
  assert.equal(seen.headers['x-forwarded-server-name'], 'app.example.com')
  assert.equal(seen.bytes, 100_000, 'an HTTP/2 body without content-length is forwarded')
  assert.ok(!seen.rawHeaders.some(h => h.startsWith(':')), 'no pseudo-headers reach the backend')
  // Several streams at once on the one connection.
  const many = await Promise.all(Array.from({ length: 20 }, (_, i) => h2request(client, { ':path': `/m${i}`, ':authority': 'app.example.com' })))
  assert.deepEqual(many.map(m => (JSON.parse(m.body.toString()) as { url: string }).url), Array.from({ length: 20 }, (_, i) => `/m${i}`))
  // HTTP/1.1 on the same port.
  const h1 = await new Promise<{ alpn: string, body: string }>((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, path: '/h1', servername: 'app.example.com', ca: pki.ca.cert, headers: { host: 'app.example.com' }, agent: false, ...{ ALPNProtocols: ['http/1.1'] } } as https.RequestOptions, res => {
      let body = ''
      res.on('data', d => { body += String(d) })
      res.on('end', () => { resolve({ alpn: String((res.socket as import('node:tls').TLSSocket).alpnProtocol), body }) })
    })
    req.on('error', reject)
    req.end()
  })
  assert.equal(h1.alpn, 'http/1.1')
  assert.equal((JSON.parse(h1.body) as { headers: Record<string, string> }).headers.host, 'app.example.com')
  // Unrouted host: an error answer over h2, not a broken stream.
  const nf = await h2request(client, { ':path': '/', ':authority': 'other.example.com' })
  assert.equal(nf.headers[':status'], 404)
})

test('gRPC-style: h2 request with body and te: trailers reaches an h2c:// backend; grpc-status trailers reach the client', async t => {
  const pki = await makePki(t)
  await pki.issue(['grpc.example.com'])
  const got: { headers: http2.IncomingHttpHeaders, body: Buffer }[] = []
  const server = http2.createServer()
  server.on('stream', (stream, headers) => {
    const chunks: Buffer[] = []
    stream.on('data', (d: Buffer) => chunks.push(d))
    stream.on('end', () => {
      got.push({ headers, body: Buffer.concat(chunks) })
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true })
      stream.on('wantTrailers', () => { stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': 'fine' }) })
      stream.end(Buffer.from([0, 0, 0, 0, 2, 8, 1]))
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.after(() => { server.close() })
  const e = await startEdge(t, pki.dir, `${silentToml}
[[listeners]]
name = "s"
listen = "127.0.0.1:0"
protocol = "https"
certificates = [{ cert = "grpc.example.com.pem", key = "grpc.example.com.key" }]
[[routes]]
pool = "grpc"
[pools.grpc]
backends = ["h2c://127.0.0.1:${(server.address() as AddressInfo).port}"]
`)
  const client = http2.connect(`https://127.0.0.1:${e.port('s')}`, { ca: pki.ca.cert, servername: 'grpc.example.com' })
  t.after(() => { client.close() })
  const message = Buffer.from([0, 0, 0, 0, 3, 10, 1, 65])
  const r = await h2request(client, { ':method': 'POST', ':path': '/pkg.Svc/Call', ':authority': 'grpc.example.com', 'content-type': 'application/grpc', te: 'trailers' }, message)
  assert.equal(r.headers[':status'], 200)
  assert.equal(r.headers['content-type'], 'application/grpc')
  assert.deepEqual([...r.body], [0, 0, 0, 0, 2, 8, 1])
  assert.equal(r.trailers?.['grpc-status'], '0')
  assert.equal(r.trailers?.['grpc-message'], 'fine')
  assert.equal(got.length, 1)
  assert.equal(got[0]?.headers[':path'], '/pkg.Svc/Call')
  assert.equal(got[0]?.headers[':authority'], 'grpc.example.com')
  assert.equal(got[0]?.headers.te, 'trailers')
  assert.deepEqual([...(got[0]?.body ?? [])], [...message])
})

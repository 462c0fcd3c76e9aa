// Forwarding: hop-by-hop removal both ways, the forwarded headers, X-Request-Id, Server-Timing, 200 MB streamed
// both ways with matching SHA-256, upstream errors (502 / 504 / 503 with the request id), client aborts
// cancelling the upstream request, and a backend dying mid-response breaking the client's transfer.
import { test } from 'node:test'
import { ms2 } from '../proxy/forward/exchange.js'
import assert from 'node:assert/strict'
import http from 'node:http'
import { createHash } from 'node:crypto'
import { pipeline } from 'node:stream/promises'
import {
  BASE_TOML, echoOf, parseRawResponse, patternSha256, patternStream, rawExchange, refusedUrl, request, startBackend,
  startEdge, waitUntil, type Echo, type RunningEdge,
} from './helpers.js'

let lastEdge: RunningEdge | undefined

async function edgeFor (t: Parameters<typeof startBackend>[0], backends: string[], route = ''): Promise<number> {
  lastEdge = await startEdge(t, `${BASE_TOML}
[[routes]]
pool = "p"
${route}
[pools.p]
backends = [ ${backends.map(u => `"${u}"`).join(', ')} ]
`)
  return lastEdge.port
}

/** The edge's own in-flight count per backend returns to 0 (a leak would skew least_conn and p2c forever). */
async function edgeSettled (): Promise<void> {
  const store = (lastEdge as RunningEdge).edge.store
  await waitUntil(() => [...store.all()].every(b => b.inflight === 0), 3000, 'the edge\'s in-flight counts to return to 0')
}

test('request hop-by-hop headers are removed; end-to-end ones kept', async t => {
  const b = await startBackend(t, 'b')
  const port = await edgeFor(t, [b.url])
  // Raw bytes: node:http's client refuses some of these headers on a request without a chunked body.
  const raw = await rawExchange(port, [
    'GET /hop HTTP/1.1',
    'Host: fwd.test',
    'Connection: close, X-Hop-Named',
    'X-Hop-Named: secret',
    'Keep-Alive: timeout=5',
    'TE: trailers',
    'Trailer: X-Checksum',
    'Upgrade: h2c',
    'Proxy-Authorization: Basic Zm9vOmJhcg==',
    'Proxy-Connection: keep-alive',
    'X-End-To-End: kept',
    'Authorization: Bearer end-to-end',
    '', '',
  ].join('\r\n'))
  const reply = parseRawResponse(raw)
  assert.equal(reply.status, 200, raw)
  const h = (JSON.parse(reply.body) as Echo).headers
  for (const name of ['x-hop-named', 'keep-alive', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'proxy-connection']) {
    assert.equal(h[name], undefined, `${name} reached the backend`)
  }
  assert.doesNotMatch(String(h.connection ?? ''), /x-hop-named/i)
  assert.equal(h['x-end-to-end'], 'kept')
  assert.equal(h.authorization, 'Bearer end-to-end')
})

test('response hop-by-hop headers are removed; end-to-end ones kept', async t => {
  const b = await startBackend(t, 'b')
  const port = await edgeFor(t, [b.url])
  const r = await request(port, { path: '/?sethdr=1' })
  assert.equal(r.status, 200)
  assert.equal(r.headers['x-secret-hop'], undefined, 'a header named by the backend\'s Connection leaked')
  assert.equal(r.headers['proxy-authenticate'], undefined)
  assert.equal(r.headers.trailer, undefined)
  assert.equal(r.headers['keep-alive'], undefined)
  assert.equal(r.headers['x-end-to-end'], 'kept')
  assert.equal(r.headers['x-backend'], 'b')
})

test('X-Forwarded-For/-Proto/-Host, Forwarded and Via are set (appended to what the client sent)', async t => {
  const b = await startBackend(t, 'b')
  const port = await edgeFor(t, [b.url])
  const fresh = echoOf(await request(port, { headers: { host: 'fwd.test:8080' } })).headers
  assert.equal(fresh['x-forwarded-for'], '127.0.0.1')
  assert.equal(fresh['x-forwarded-proto'], 'http')
  assert.equal(fresh['x-forwarded-host'], 'fwd.test:8080')
  assert.equal(fresh.forwarded, 'for=127.0.0.1;host="fwd.test:8080";proto=http')
  assert.equal(fresh.via, '1.1 edge-proxy')
  assert.equal(fresh.host, 'fwd.test:8080')

  const chained = echoOf(await request(port, {
    headers: {
      host: 'fwd.test',
      'x-forwarded-for': '203.0.113.9',
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'spoofed.example',
      forwarded: 'for=203.0.113.9;proto=https',
      via: '1.0 corp-proxy',
    },
  })).headers
  assert.equal(chained['x-forwarded-for'], '203.0.113.9, 127.0.0.1')
  assert.equal(chained['x-forwarded-proto'], 'http', 'the proto is what the edge saw, not what the client claims')
  assert.equal(chained['x-forwarded-host'], 'fwd.test')
  assert.equal(chained.forwarded, 'for=203.0.113.9;proto=https, for=127.0.0.1;host=fwd.test;proto=http')
  assert.equal(chained.via, '1.0 corp-proxy, 1.1 edge-proxy')
})

test('X-Request-Id is kept when sent, generated when not, and echoed on the response', async t => {
  const b = await startBackend(t, 'b')
  const port = await edgeFor(t, [b.url])
  const r1 = await request(port, { headers: { 'x-request-id': 'client-id-1' } })
  assert.equal(echoOf(r1).headers['x-request-id'], 'client-id-1')
  assert.equal(r1.headers['x-request-id'], 'client-id-1')
  const r2 = await request(port)
  const r3 = await request(port)
  const id2 = echoOf(r2).headers['x-request-id']
  assert.ok(typeof id2 === 'string' && id2.length >= 6, `generated id ${String(id2)}`)
  assert.equal(r2.headers['x-request-id'], id2)
  assert.notEqual(echoOf(r3).headers['x-request-id'], id2, 'ids are unique')
})

test('Server-Timing carries the backend\'s entries plus edge;dur= and upstream;dur=', async t => {
  const b = await startBackend(t, 'b')
  const port = await edgeFor(t, [b.url])
  const r = await request(port, { path: '/?timing=1&delay=60' })
  const st = String(r.headers['server-timing'])
  const m = /^app;dur=1\.5, db;dur=0\.3, edge;dur=([\d.]+), upstream;dur=([\d.]+)$/.exec(st)
  assert.ok(m !== null, `server-timing: ${st}`)
  assert.ok(Number(m[2]) >= 55, `upstream;dur=${m[2]} covers the backend's 60 ms`)
  assert.ok(Number(m[1]) < Number(m[2]), `edge;dur=${m[1]} is the proxy's own time only`)
  const plain = String((await request(port)).headers['server-timing'])
  assert.match(plain, /^edge;dur=[\d.]+, upstream;dur=[\d.]+$/)
})

const BIG = 200 * 1024 * 1024

test('a 200 MB streamed upload and download pass through with matching SHA-256', async t => {
  const b = await startBackend(t, 'b')
  const port = await edgeFor(t, [b.url], 'timeout = "60s"')
  const want = await patternSha256(BIG)

  // Upload, chunked (no length known in advance).
  const up = await new Promise<string>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/upload', agent: false }, res => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => { body += d })
      res.on('end', () => { resolve(body) })
    })
    req.on('error', reject)
    pipeline(patternStream(BIG), req).catch(reject)
  })
  const echo = JSON.parse(up) as { bodyLength: number, sha256: string }
  assert.equal(echo.bodyLength, BIG)
  assert.equal(echo.sha256, want)

  // Download, hashed as it arrives.
  const down = await new Promise<{ length: number, sha: string }>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: `/?download=${BIG}`, agent: false }, res => {
      const h = createHash('sha256')
      let length = 0
      res.on('data', (d: Buffer) => { length += d.length; h.update(d) })
      res.on('end', () => { resolve({ length, sha: h.digest('hex') }) })
      res.on('error', reject)
    }).on('error', reject)
  })
  assert.equal(down.length, BIG)
  assert.equal(down.sha, want)
})

test('connect refused -> 502 naming the request id; then, in the cooldown, no live backend -> 503', async t => {
  const port = await edgeFor(t, [await refusedUrl()])
  const r1 = await request(port, { headers: { 'x-request-id': 'rid-502' } })
  assert.equal(r1.status, 502, r1.body)
  assert.match(r1.body, /EP_ERR_UPSTREAM_CONNECT/)
  assert.match(r1.body, /request-id: rid-502/)
  const r2 = await request(port, { headers: { 'x-request-id': 'rid-503' } })
  assert.equal(r2.status, 503, r2.body)
  assert.match(r2.body, /EP_ERR_NO_HEALTHY_BACKEND/)
  assert.match(r2.body, /request-id: rid-503/)
  assert.equal(r2.headers['x-request-id'], 'rid-503')
  await edgeSettled()
})

test('a refused backend is skipped: a body-less request is retried on a live one', async t => {
  const live = await startBackend(t, 'live')
  const port = await edgeFor(t, [await refusedUrl(), live.url])
  for (let i = 0; i < 6; i++) assert.equal(echoOf(await request(port)).backend, 'live')
})

test('timeout -> 504 with the request id, and the backend\'s request is cancelled', async t => {
  const b = await startBackend(t, 'b')
  const port = await edgeFor(t, [b.url], 'timeout = "300ms"')
  const started = Date.now()
  const r = await request(port, { path: '/?hang=1', headers: { 'x-request-id': 'rid-504' } })
  const took = Date.now() - started
  assert.equal(r.status, 504, r.body)
  assert.match(r.body, /EP_ERR_UPSTREAM_TIMEOUT/)
  assert.match(r.body, /request-id: rid-504/)
  assert.ok(took >= 280 && took < 2000, `answered after ${took} ms`)
  await waitUntil(() => b.seen[0]?.aborted === true, 3000, 'the backend to see its request aborted')
  await edgeSettled()
})

test('a client that goes away cancels the upstream request', async t => {
  const b = await startBackend(t, 'b')
  const port = await edgeFor(t, [b.url])
  const req = http.request({ host: '127.0.0.1', port, path: '/?hang=1', agent: false })
  req.on('error', () => {})
  req.end()
  await waitUntil(() => b.seen.length === 1, 3000, 'the backend to get the request')
  assert.equal(b.seen[0]?.aborted, false)
  req.destroy()
  await waitUntil(() => b.seen[0]?.aborted === true && b.inflight === 0, 3000, 'the backend to see its request aborted')
  await edgeSettled()
})

test('a client that goes away mid-upload cancels the upstream request', async t => {
  const b = await startBackend(t, 'b')
  const port = await edgeFor(t, [b.url])
  const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/up', agent: false })
  req.on('error', () => {})
  req.write(Buffer.alloc(65536, 1))
  await waitUntil(() => (b.seen[0]?.bodyLength ?? 0) > 0, 3000, 'the backend to get the first body bytes')
  req.destroy()
  await waitUntil(() => b.seen[0]?.aborted === true && b.inflight === 0, 3000, 'the backend to see its request aborted')
  assert.equal(b.seen[0]?.complete, false)
  await edgeSettled()
})

/** Fetches a path and reports whether the body arrived complete or the transfer broke. */
function transfer (port: number, path: string): Promise<{ status: number, complete: boolean, bytes: number }> {
  return new Promise(resolve => {
    let status = 0
    let bytes = 0
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, res => {
      status = res.statusCode ?? 0
      res.on('data', (d: Buffer) => { bytes += d.length })
      res.on('end', () => { resolve({ status, complete: res.complete, bytes }) })
      res.on('error', () => { resolve({ status, complete: false, bytes }) })
    })
    req.on('error', () => { resolve({ status, complete: false, bytes }) })
  })
}

test('a backend dying mid-response breaks the client\'s transfer (with and without Content-Length)', async t => {
  const b = await startBackend(t, 'b')
  const port = await edgeFor(t, [b.url])
  for (const path of ['/?die=1', '/?die=chunked']) {
    const r = await transfer(port, path)
    assert.equal(r.status, 200, path)
    assert.equal(r.complete, false, `${path}: the client saw a complete body of ${r.bytes} bytes`)
    assert.ok(r.bytes < 100000, path)
  }
  // The edge still serves afterwards.
  assert.equal(echoOf(await request(port)).backend, 'b')
  await edgeSettled()
})

test('response framing: repeated Set-Cookie, 204, 304, HEAD and trailers pass through; the connection stays usable', async t => {
  const server = http.createServer((req, res) => {
    switch (req.url) {
      case '/cookies': res.setHeader('set-cookie', ['a=1; Path=/', 'b=2; Path=/']); res.end('c'); return
      case '/204': res.writeHead(204); res.end(); return
      case '/304': res.writeHead(304, { etag: '"v1"' }); res.end(); return
      case '/head': res.writeHead(200, { 'content-length': '1234' }); res.end(); return
      case '/trailers': res.writeHead(200, { trailer: 'x-sum' }); res.write('abc'); res.addTrailers({ 'x-sum': '42' }); res.end(); return
      default: res.end('ok')
    }
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.after(() => new Promise<void>(resolve => { server.close(() => { resolve() }); server.closeAllConnections() }))
  const port = await edgeFor(t, [`http://127.0.0.1:${(server.address() as { port: number }).port}`])
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.after(() => { agent.destroy() })

  const cookies = await request(port, { path: '/cookies', agent })
  assert.deepEqual(cookies.headers['set-cookie'], ['a=1; Path=/', 'b=2; Path=/'])
  const r204 = await request(port, { path: '/204', agent })
  assert.equal(r204.status, 204)
  assert.equal(r204.body, '')
  const r304 = await request(port, { path: '/304', agent })
  assert.equal(r304.status, 304)
  assert.equal(r304.headers.etag, '"v1"')
  const head = await request(port, { method: 'HEAD', path: '/head', agent })
  assert.equal(head.status, 200)
  assert.equal(head.headers['content-length'], '1234')
  assert.equal(head.body, '')
  // All of the above on one keep-alive connection: a framing mistake would desynchronise this one.
  assert.equal((await request(port, { path: '/', agent })).body, 'ok')

  const trailers = await new Promise<Record<string, string | undefined>>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/trailers', agent: false }, res => {
      res.resume()
      res.on('end', () => { resolve(res.trailers) })
    }).on('error', reject)
  })
  assert.deepEqual({ ...trailers }, { 'x-sum': '42' })
})

test('an IPv6 client is written as "[::1]" (quoted) in Forwarded and plain in X-Forwarded-For', async t => {
  const b = await startBackend(t, 'b')
  const { port } = await startEdge(t, `
[admin]
listen = "127.0.0.1:0"
[log]
access = "off"
level = "silent"
[[listeners]]
name = "v6"
listen = "[::1]:0"
[[routes]]
pool = "p"
[pools.p]
backends = ["${b.url}"]
`)
  const body = await new Promise<string>((resolve, reject) => {
    http.get({ host: '::1', port, path: '/', headers: { host: 'v6.test' }, agent: false }, res => {
      let s = ''
      res.on('data', (d: Buffer) => { s += d.toString() })
      res.on('end', () => { resolve(s) })
    }).on('error', reject)
  })
  const h = (JSON.parse(body) as Echo).headers
  assert.equal(h['x-forwarded-for'], '::1')
  assert.equal(h.forwarded, 'for="[::1]";host=v6.test;proto=http')
})

test('ms2 prints milliseconds to two decimals exactly as rounding the number would', () => {
  for (const x of [0, 0.004, 0.005, 0.07, 0.1, 0.5, 0.999, 1, 1.05, 12.5, 12.345, 99.995, 1234.5678, 86_400_000.01, -0.3]) {
    assert.equal(ms2(x), String(Math.round(x * 100) / 100), `ms2(${x})`)
  }
  for (let i = 0; i < 10_000; i++) {
    const x = Math.random() * 10 ** (i % 7)
    assert.equal(ms2(x), String(Math.round(x * 100) / 100), `ms2(${x})`)
  }
})

// The edge's own HTTP/1.1 server (proxy/listen/h1.ts) against node:http: every case runs on both `http1_server` values
// and must come out the same. Pipelining, Expect, HTTP/1.0 keep-alive, framing of length-less answers, HEAD,
// request heads split over packets or longer than llhttp's 32-header batch, keepalive_timeout, graceful close,
// an upgrade pipelined behind a slow answer.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { WebSocketServer } from 'ws'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { BASE_TOML, echoOf, rawExchange, parseRawResponse, request, sleep, startBackend, startEdge, startRawBackend, tempDir, waitUntil, type Echo, type RawReply, type RunningEdge } from './helpers.js'

type T = Parameters<typeof startBackend>[0]

/** An edge on one HTTP/1.1 server: a "/local" respond route, everything else to `backendUrl`. */
async function startWith (t: T, engine: string, backendUrl: string, opts: { server?: string, base?: string } = {}): Promise<RunningEdge> {
  return await startEdge(t, `
[server]
http1_server = "${engine}"
${opts.server ?? ''}
${opts.base ?? BASE_TOML}
[[routes]]
name = "local"
match.path_prefix = "/local"
respond = { status = 200, body = "local answer\\n" }
[[routes]]
pool = "p"
[pools.p]
backends = ["${backendUrl}"]
`)
}

async function edgeWith (t: T, engine: string, backendUrl: string): Promise<number> {
  return (await startWith(t, engine, backendUrl)).port
}

/** Splits a byte stream of HTTP/1.1 responses (Content-Length, chunked or no body) into replies. */
function splitResponses (text: string, heads: ReadonlySet<number> = new Set()): RawReply[] {
  const out: RawReply[] = []
  let rest = text
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n')
    if (end === -1) break
    const r = parseRawResponse(rest)
    let len = end + 4
    if (r.status >= 100 && r.status < 200) { rest = rest.slice(len); continue }
    if (!heads.has(out.length)) {
      if (r.headers['content-length'] !== undefined) len += Number(r.headers['content-length'])
      else if (r.headers['transfer-encoding'] === 'chunked') len = rest.indexOf('0\r\n\r\n', end) + 5
    }
    out.push(heads.has(out.length) ? { ...r, body: '' } : r)
    rest = rest.slice(len)
  }
  return out
}

/** A connection that collects what arrives and can wait for a pattern in it. */
function connect (port: number): Promise<{ sock: net.Socket, got: () => string, waitFor: (re: RegExp, ms?: number) => Promise<void>, closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1')
    let buf = ''
    sock.on('data', d => { buf += d.toString('latin1') })
    const closed = new Promise<void>(res => sock.once('close', () => { res() }))
    sock.once('error', reject)
    sock.once('connect', () => {
      resolve({
        sock,
        got: () => buf,
        closed,
        waitFor: async (re, ms = 3000) => {
          const until = Date.now() + ms
          while (!re.test(buf)) {
            if (Date.now() > until) throw new Error(`timed out waiting for ${String(re)} in ${JSON.stringify(buf.slice(0, 300))}`)
            await sleep(5)
          }
        },
      })
    })
  })
}

for (const engine of ['edge', 'node']) {
  test(`[${engine}] pipelined requests are answered in order, one at a time, HEAD without a body`, async t => {
    const b = await startBackend(t, 'b')
    const port = await edgeWith(t, engine, b.url)
    const text = await rawExchange(port,
      'GET /first?delay=60 HTTP/1.1\r\nHost: a.test\r\n\r\n' +
      'HEAD /second?download=10 HTTP/1.1\r\nHost: a.test\r\n\r\n' +
      'POST /third HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello' +
      'GET /local HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n')
    const replies = splitResponses(text, new Set([1]))
    assert.deepEqual(replies.map(r => r.status), [200, 200, 200, 200], text)
    assert.equal((JSON.parse(replies[0]?.body ?? '') as Echo).url, '/first?delay=60')
    assert.equal(replies[1]?.headers['content-length'], '10', 'HEAD keeps the length of the GET it stands for')
    const third = JSON.parse(replies[2]?.body ?? '') as Echo
    assert.equal(third.url, '/third')
    assert.equal(third.bodyLength, 5)
    assert.equal(replies[3]?.body, 'local answer\n')
    assert.equal(replies[3]?.headers.connection, 'close')
    await sleep(50)
    assert.deepEqual(b.seen.map(s => s.url), ['/first?delay=60', '/second?download=10', '/third'])
  })

  test(`[${engine}] Expect: 100-continue gets 100 before the body is sent; another expectation gets 417`, async t => {
    const b = await startBackend(t, 'b')
    const port = await edgeWith(t, engine, b.url)
    const c = await connect(port)
    c.sock.write('PUT /up HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n')
    await c.waitFor(/^HTTP\/1\.1 100 Continue\r\n\r\n/)
    c.sock.write('hello world')
    await c.waitFor(/\r\n0\r\n\r\n$/)
    const r = splitResponses(c.got())
    assert.equal(r[0]?.status, 200)
    assert.equal((JSON.parse(r[0]?.body ?? '') as Echo).bodyLength, 11)
    c.sock.destroy()
    const reply = parseRawResponse(await rawExchange(port, 'GET / HTTP/1.1\r\nHost: a.test\r\nExpect: telepathy\r\nConnection: close\r\n\r\n'))
    assert.equal(reply.status, 417)
    assert.equal(b.seen.length, 1, 'a failed expectation is not forwarded')
  })

  test(`[${engine}] HTTP/1.0: closes unless the client asks for keep-alive`, async t => {
    const b = await startBackend(t, 'b')
    const port = await edgeWith(t, engine, b.url)
    const once = await rawExchange(port, 'GET /a HTTP/1.0\r\nHost: a.test\r\n\r\n')
    const r = parseRawResponse(once)
    assert.equal(r.status, 200)
    assert.equal(r.headers.connection, 'close')
    const c = await connect(port)
    c.sock.write('GET /local/b HTTP/1.0\r\nHost: a.test\r\nConnection: keep-alive\r\n\r\n')
    await c.waitFor(/local answer/)
    assert.equal(parseRawResponse(c.got()).headers.connection, 'keep-alive')
    c.sock.write('GET /local/c HTTP/1.0\r\nHost: a.test\r\n\r\n')
    await c.closed
    const replies = splitResponses(c.got())
    assert.deepEqual(replies.map(x => [x.body, x.headers.connection]), [['local answer\n', 'keep-alive'], ['local answer\n', 'close']])
  })

  test(`[${engine}] an answer without a length: chunked to HTTP/1.1, read-to-close to HTTP/1.0`, async t => {
    const raw = await startRawBackend(t, 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nno length here')
    const port = await edgeWith(t, engine, raw.url)
    const r11 = parseRawResponse(await rawExchange(port, 'GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n'))
    assert.equal(r11.headers['transfer-encoding'], 'chunked')
    assert.equal(r11.body, 'no length here')
    const text10 = await rawExchange(port, 'GET / HTTP/1.0\r\nHost: a.test\r\nConnection: keep-alive\r\n\r\n')
    const r10 = parseRawResponse(text10)
    assert.equal(r10.headers['transfer-encoding'], undefined)
    assert.equal(r10.headers.connection, 'close', 'the close is the body\'s end, so the connection cannot stay')
    assert.equal(r10.body, 'no length here')
  })

  test(`[${engine}] a head split over packets, and one with more headers than llhttp hands over at once`, async t => {
    const b = await startBackend(t, 'b')
    const port = await edgeWith(t, engine, b.url)
    const c = await connect(port)
    const many = Array.from({ length: 80 }, (_, i) => `X-H${i}: v${i}\r\n`).join('')
    const head = `GET /split/path?q=1 HTTP/1.1\r\nHost: a.test\r\n${many}Connection: close\r\n\r\n`
    let from = 0
    for (const cut of [5, 17, 40, 200, 600, head.length]) { c.sock.write(head.slice(from, cut)); from = cut; await sleep(10) }
    await c.closed
    const reply = parseRawResponse(c.got())
    const echo = echoOf({ status: reply.status, headers: {}, body: reply.body })
    assert.equal(echo.url, '/split/path?q=1')
    for (let i = 0; i < 80; i++) assert.equal(echo.headers[`x-h${i}`], `v${i}`)
  })

  test(`[${engine}] keepalive_timeout closes an idle connection; a graceful close lets a slow answer finish`, async t => {
    const b = await startBackend(t, 'b')
    const e = await startWith(t, engine, b.url, { server: 'keepalive_timeout = "300ms"' })
    const c = await connect(e.port)
    c.sock.write('GET /idle HTTP/1.1\r\nHost: a.test\r\n\r\n')
    await c.waitFor(/"url":"\/idle"/)
    const t0 = Date.now()
    await c.closed
    const idle = Date.now() - t0
    assert.ok(idle >= 250 && idle < 2500, `closed after ${idle} ms idle`)

    const slow = request(e.port, { path: '/slow?delay=300' })
    await sleep(100)
    const closing = e.edge.close(5000)
    const r = await slow
    assert.equal(echoOf(r).url, '/slow?delay=300')
    assert.equal(r.headers.connection, 'close', 'a draining edge does not keep the connection')
    await closing
  })
}

test('[edge] requests pipelined after one the edge answers with close are not served (node:http serves them)', async t => {
  const b = await startBackend(t, 'b')
  const port = await edgeWith(t, 'edge', b.url)
  // A request the edge refuses (400) ends the connection; the one behind it must not reach a backend.
  const text = await rawExchange(port,
    'GET http://[bad HTTP/1.1\r\nHost: a.test\r\n\r\n' +
    'GET /behind HTTP/1.1\r\nHost: a.test\r\n\r\n')
  const replies = splitResponses(text)
  assert.deepEqual(replies.map(r => r.status), [400], text)
  await sleep(50)
  assert.deepEqual(b.seen.map(s => s.url), [])
})

// node:http (http1_server = "node") starts such an upgrade at once, so its 101 overtakes the earlier answer.
test('[edge] an upgrade pipelined behind a slow answer waits for it, and the bytes sent with it arrive', async t => {
  const b = await startBackend(t, 'b')
  const wss = new WebSocketServer({ server: b.server })
  wss.on('connection', ws => { ws.on('message', (m, binary) => { ws.send(m, { binary }) }) })
  t.after(() => { for (const c of wss.clients) c.terminate(); wss.close() })
  const port = await edgeWith(t, 'edge', b.url)
  const c = await connect(port)
  // One masked text frame "hi" (RFC 6455 5.3), sent in the same write as both heads.
  const mask = [1, 2, 3, 4]
  const frame = Buffer.from([0x81, 0x82, ...mask, 'h'.charCodeAt(0) ^ 1, 'i'.charCodeAt(0) ^ 2])
  c.sock.write(Buffer.concat([Buffer.from(
    'GET /first?delay=80 HTTP/1.1\r\nHost: a.test\r\n\r\n' +
    'GET /ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n', 'latin1'), frame]))
  await c.waitFor(/\x81\x02hi$/)
  const text = c.got()
  const first = text.indexOf('"url":"/first?delay=80"')
  const switched = text.indexOf('HTTP/1.1 101 Switching Protocols')
  assert.ok(first !== -1 && switched > first, `the first answer comes whole before the 101: ${JSON.stringify(text.slice(0, 400))}`)
  c.sock.destroy()
})

for (const engine of ['edge', 'node']) {
  test(`[${engine}] a refused or closing answer frees the connection even when the client never sends its FIN`, async t => {
    const b = await startBackend(t, 'b')
    const e = await startWith(t, engine, b.url)
    for (const bytes of ['HELLO THERE\r\n\r\n', 'GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n']) {
      const sock = net.connect({ port: e.port, host: '127.0.0.1', allowHalfOpen: true })
      sock.on('error', () => {})
      sock.on('data', () => {})
      await new Promise(resolve => sock.once('connect', resolve))
      sock.write(bytes)
      await new Promise(resolve => sock.once('end', resolve))
      const until = Date.now() + 2000
      while (await e.connections() > 0 && Date.now() < until) await sleep(10)
      assert.equal(await e.connections(), 0, `the edge still holds the connection after answering ${JSON.stringify(bytes.slice(0, 12))}`)
      sock.destroy()
    }
  })
}

test('[edge] a pipelined stream cut at random places (heads, chunk sizes, bodies) is answered the same as in one piece', async t => {
  const b = await startBackend(t, 'b')
  const port = await edgeWith(t, 'edge', b.url)
  const body = 'x'.repeat(300)
  const chunked = '7\r\nchunked\r\n1\r\n-\r\n4\r\nbody\r\n0\r\n\r\n'
  const stream =
    `GET /one?a=1 HTTP/1.1\r\nHost: a.test\r\nX-Long: ${'v'.repeat(200)}\r\n\r\n` +
    `POST /two HTTP/1.1\r\nHost: a.test\r\nContent-Length: ${body.length}\r\n\r\n${body}` +
    `PUT /three HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n${chunked}` +
    'GET /local/four HTTP/1.1\r\nHost: a.test\r\n\r\n' +
    'DELETE /five HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n'
  const expected = [['/one?a=1', 0], ['/two', 300], ['/three', 12], ['local', 0], ['/five', 0]]
  let seed = 7
  const rand = (n: number): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n }
  for (let round = 0; round < 12; round++) {
    const c = await connect(port)
    c.sock.setNoDelay(true)
    let at = 0
    while (at < stream.length) {
      const n = 1 + rand(round < 4 ? 8 : 120)
      c.sock.write(stream.slice(at, at + n))
      at += n
      if (rand(3) === 0) await sleep(1)
    }
    await c.closed
    const replies = splitResponses(c.got())
    const got = replies.map(r => r.body === 'local answer\n' ? ['local', 0] : [(JSON.parse(r.body) as Echo).url, (JSON.parse(r.body) as Echo).bodyLength])
    assert.deepEqual(got, expected, `round ${round}`)
  }
})

for (const engine of ['edge', 'node']) {
  test(`[${engine}] the access log counts a request body that arrived with its head, and the whole answer`, async t => {
    const b = await startBackend(t, 'b')
    const dir = await tempDir(t)
    const file = join(dir, 'access.log')
    const e = await startWith(t, engine, b.url, { base: BASE_TOML.replace('access = "off"', `access = ${JSON.stringify(file)}`) })
    // Head and body in one write, so both arrive in one read.
    const text = await rawExchange(e.port, 'POST /in HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello')
    const head = text.indexOf('\r\n\r\n')
    await waitUntil(async () => (await readFile(file, 'utf8').catch(() => '')).includes('"path":"/in"'), 3000, 'the access log line')
    const line = JSON.parse((await readFile(file, 'utf8')).trim().split('\n').pop() as string) as { bytes_in: number, bytes_out: number }
    assert.equal(line.bytes_in, 5)
    assert.equal(line.bytes_out, text.length, `the answer was ${text.length} bytes (head ${head + 4})`)
  })
}

for (const engine of ['edge', 'node']) {
  test(`[${engine}] request trailers are not forwarded, and never become headers of the next request`, async t => {
    const b = await startBackend(t, 'b')
    const port = await edgeWith(t, engine, b.url)
    const text = await rawExchange(port,
      'POST /with-trailer HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer-A: one\r\nX-Trailer-B: two\r\n\r\n' +
      'GET /next HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n')
    const replies = splitResponses(text)
    assert.deepEqual(replies.map(r => r.status), [200, 200], text)
    const [first, next] = replies.map(r => JSON.parse(r.body) as Echo)
    assert.equal(first?.bodyLength, 5)
    assert.equal(next?.url, '/next')
    for (const e of [first, next]) {
      assert.equal(e?.headers['x-trailer-a'], undefined)
      assert.equal(e?.headers['x-trailer-b'], undefined)
    }
  })
}

for (const engine of ['edge', 'node']) {
  test(`[${engine}] a body the edge answers before reading is skipped, and the next request is read right`, async t => {
    const b = await startBackend(t, 'b')
    const port = await edgeWith(t, engine, b.url)
    const text = await rawExchange(port,
      `POST /local HTTP/1.1\r\nHost: a.test\r\nContent-Length: 40\r\n\r\n${'GET /smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n'.padEnd(40, 'x')}` +
      'GET /after HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n')
    const replies = splitResponses(text)
    assert.deepEqual(replies.map(r => r.status), [200, 200], text)
    assert.equal(replies[0]?.body, 'local answer\n')
    assert.equal((JSON.parse(replies[1]?.body ?? '') as Echo).url, '/after')
    assert.deepEqual(b.seen.map(s => s.url), ['/after'], 'the body was never read as a request')
  })
}

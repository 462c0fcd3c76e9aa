// Hostile input: requests that could be framed two ways get 400 and never reach a backend; oversized heads get
// 431; malformed backend responses become 502; garbage, slow and aborted clients neither crash the edge nor
// leak connections.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import {
  BASE_TOML, echoOf, parseRawResponse, rawExchange, request, sleep, startBackend, startEdge, startRawBackend, waitUntil,
} from './helpers.js'

const HEAD = 'POST /submit HTTP/1.1\r\nHost: hostile.test\r\n'

const smuggling: Array<[string, string]> = [
  ['Content-Length and Transfer-Encoding', `${HEAD}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`],
  ['Transfer-Encoding and Content-Length', `${HEAD}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n`],
  ['two different Content-Lengths', `${HEAD}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`],
  ['two equal Content-Lengths', `${HEAD}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello`],
  ['a Content-Length list', `${HEAD}Content-Length: 5, 5\r\n\r\nhello`],
  ['Transfer-Encoding "gzip, chunked"', `${HEAD}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`],
  ['Transfer-Encoding "chunked, gzip"', `${HEAD}Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n`],
  ['Transfer-Encoding split over two lines', `${HEAD}Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`],
  ['Transfer-Encoding "identity"', `${HEAD}Transfer-Encoding: identity\r\n\r\nhello`],
  ['a malformed chunk size', `${HEAD}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n`],
  ['a chunk size with a sign', `${HEAD}Transfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n`],
  ['obs-fold', `${HEAD}X-Folded: first\r\n  second\r\nContent-Length: 0\r\n\r\n`],
  ['a space before the colon', `${HEAD}Content-Length : 5\r\n\r\nhello`],
  ['a bare LF line ending', `GET / HTTP/1.1\nHost: hostile.test\nX-A: b\n\n`],
]

test('hostile requests', async t => {
  const backend = await startBackend(t, 'b')
  const edge = await startEdge(t, `
[server]
max_header_bytes = 4096
headers_timeout = "500ms"
${BASE_TOML}
[[routes]]
pool = "p"
[pools.p]
backends = ["${backend.url}"]
`)
  const port = edge.port

  for (const [name, bytes] of smuggling) {
    await t.test(`${name} -> 400, never forwarded`, async () => {
      const reply = parseRawResponse(await rawExchange(port, bytes))
      assert.equal(reply.status, 400, `${name}: ${reply.body}`)
      assert.equal(reply.headers.connection, 'close')
      assert.match(reply.body, /EP_ERR_BAD_REQUEST/)
    })
  }
  await t.test('none of them reached the backend', async () => {
    await sleep(100)
    assert.deepEqual(backend.seen.map(s => s.url), [])
  })

  await t.test('a well-formed chunked request still goes through', async () => {
    const reply = parseRawResponse(await rawExchange(port, `${HEAD}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n`))
    assert.equal(reply.status, 200)
    assert.equal(JSON.parse(reply.body).bodyLength, 5)
  })

  await t.test('over-large headers -> 431', async () => {
    const reply = parseRawResponse(await rawExchange(port, `GET / HTTP/1.1\r\nHost: hostile.test\r\nX-Big: ${'a'.repeat(8000)}\r\n\r\n`))
    assert.equal(reply.status, 431)
    assert.match(reply.body, /EP_ERR_HEADERS_TOO_LARGE/)
    const many = Array.from({ length: 300 }, (_, i) => `X-H${i}: ${'v'.repeat(20)}\r\n`).join('')
    assert.equal(parseRawResponse(await rawExchange(port, `GET / HTTP/1.1\r\nHost: hostile.test\r\n${many}\r\n`)).status, 431)
  })

  await t.test('garbage bytes get 400 and the connection closed', async () => {
    const reply = await rawExchange(port, Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0xff, 0x0d, 0x0a, 0x0d, 0x0a]))
    assert.ok(reply === '' || parseRawResponse(reply).status === 400, reply)
    const r2 = await rawExchange(port, 'HELLO THERE\r\n\r\n')
    assert.ok(r2 === '' || parseRawResponse(r2).status === 400, r2)
  })

  await t.test('slow partial headers are cut after headers_timeout', async () => {
    const sock = net.connect(port, '127.0.0.1')
    sock.on('error', () => {})
    let got = ''
    sock.on('data', d => { got += d.toString('latin1') })
    await new Promise(resolve => sock.once('connect', resolve))
    sock.write('GET / HTTP/1.1\r\nHost: hostile.test\r\n')
    const closed = new Promise<void>(resolve => sock.once('close', () => { resolve() }))
    const started = Date.now()
    const tick = setInterval(() => { if (!sock.destroyed) sock.write('X-Slow: 1\r\n') }, 100)
    let limit: NodeJS.Timeout | undefined
    try {
      await Promise.race([closed, new Promise((_resolve, reject) => {
        limit = setTimeout(() => { reject(new Error('a slow client was never cut off')) }, 4000)
      })])
    } finally {
      clearTimeout(limit)
      clearInterval(tick)
      sock.destroy()
    }
    assert.ok(Date.now() - started < 4000)
    assert.match(got, /^HTTP\/1\.1 408 /, 'a slow client is told 408, not that its request was malformed')
  })

  await t.test('aborted clients: mid-head, mid-body, right after connecting, mid-response', async () => {
    const abort = async (bytes: string, afterMs = 30): Promise<void> => {
      const sock = net.connect(port, '127.0.0.1')
      sock.on('error', () => {})
      await new Promise(resolve => sock.once('connect', resolve))
      if (bytes !== '') sock.write(bytes)
      await sleep(afterMs)
      sock.destroy()
    }
    await abort('')
    await abort('GET / HTTP/1.1\r\nHo')
    await abort(`${HEAD}Content-Length: 100000\r\n\r\n${'x'.repeat(1000)}`)
    await abort(`${HEAD}Transfer-Encoding: chunked\r\n\r\n400\r\n${'x'.repeat(100)}`)
    await abort('GET /?delay=300 HTTP/1.1\r\nHost: hostile.test\r\n\r\n', 50)
    await abort(`GET /?download=${50 * 1024 * 1024} HTTP/1.1\r\nHost: hostile.test\r\n\r\n`, 50)
  })

  await t.test('the edge still serves and no client connection is left open', async () => {
    assert.equal(echoOf(await request(port, { headers: { host: 'hostile.test' } })).backend, 'b')
    await waitUntil(async () => (await edge.connections()) === 0, 3000, 'the edge\'s connection count to return to 0')
    await waitUntil(() => backend.inflight === 0, 3000, 'the backend to have no open request')
    await waitUntil(() => [...edge.edge.store.all()].every(b => b.inflight === 0), 3000, 'the edge\'s in-flight counts to return to 0')
  })
})

const badResponses: Array<[string, string]> = [
  ['a bad status line', 'HTTP/1.1 abc OK\r\nContent-Length: 2\r\n\r\nok'],
  ['not HTTP at all', 'SSH-2.0-OpenSSH_9.6\r\n\r\n'],
  ['Content-Length and Transfer-Encoding', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
  ['two different Content-Lengths', 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc'],
  ['a header with an invalid name', 'HTTP/1.1 200 OK\r\nBad Header: x\r\nContent-Length: 2\r\n\r\nok'],
  ['oversized headers', `HTTP/1.1 200 OK\r\nX-Big: ${'b'.repeat(40000)}\r\nContent-Length: 2\r\n\r\nok`],
  ['a close before any byte', ''],
]

test('malformed backend responses -> 502 with the request id', async t => {
  for (const [name, reply] of badResponses) {
    await t.test(name, async t2 => {
      const rb = await startRawBackend(t2, reply)
      const { port } = await startEdge(t2, `${BASE_TOML}
[[routes]]
pool = "p"
[pools.p]
backends = ["${rb.url}"]
`)
      const r = await request(port, { headers: { 'x-request-id': 'rid-bad' } })
      assert.equal(r.status, 502, `${name}: ${r.status} ${r.body}`)
      assert.match(r.body, /request-id: rid-bad/)
      assert.equal(rb.requests, 1)
    })
  }
})

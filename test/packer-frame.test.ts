import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { WebSocket } from 'ws'
import { decodeFrame, encodeFrame, encodeU32, encodePing, FrameType, HEADER_SIZE, MAX_DATA } from '../packer/frame.js'
import { decodeOpen, encodeOpen, decodeHello, encodeHello, decodeGrant, encodeGrant, decodeCodeMessage, encodeCodeMessage } from '../packer/payload.js'
import { TunnelError } from '../packer/errors.js'
import type { Session } from '../packer/session.js'
import { startEdge, startClient, registered, tcpServer, token, CLIENT } from './packer-util.js'

test('frames round-trip and payload views are not copies', () => {
  const payload = Buffer.from('hello tunnel')
  const f = decodeFrame(encodeFrame(FrameType.DATA, 7, payload))
  assert.ok(!(f instanceof TunnelError))
  assert.equal(f.type, FrameType.DATA)
  assert.equal(f.streamId, 7)
  assert.deepEqual(f.payload, payload)
  const w = decodeFrame(encodeU32(FrameType.WINDOW_UPDATE, 0, 65536))
  assert.ok(!(w instanceof TunnelError) && w.payload.readUInt32BE(0) === 65536 && w.streamId === 0)
  const p = decodeFrame(encodePing(FrameType.PING, 42n))
  assert.ok(!(p instanceof TunnelError) && p.payload.readBigUInt64BE(0) === 42n)
  const sliced = decodeFrame(encodeFrame(FrameType.DATA, 3, Buffer.from('abcdef'), 0, 2, 5))
  assert.ok(!(sliced instanceof TunnelError) && sliced.payload.toString() === 'cde')
})

test('payload codecs round-trip (OPEN v4/v6, HELLO, GRANT, RESET, GOAWAY)', () => {
  for (const address of ['203.0.113.9', '2001:db8::1', '::ffff:10.0.0.1', '::1', 'fe80:1:2:3:4:5:6:7']) {
    const info = { family: (address.includes(':') ? 6 : 4) as 4 | 6, address, port: 51234, service: 'tls' as const, servername: 'db.tunnel.test' }
    assert.deepEqual(decodeOpen(encodeOpen(info)), info)
  }
  const hello = { streamWindow: 1 << 18, sessionWindow: 1 << 23, claims: [{ service: 'http' as const, name: 'app.tunnel.test' }, { service: 'tls' as const, name: '*.db.tunnel.test' }] }
  assert.deepEqual(decodeHello(encodeHello(hello)), hello)
  const grant = { streamWindow: 1 << 18, sessionWindow: 1 << 23, granted: hello.claims, refused: [{ service: 'tcp' as const, name: 'x.other.test' }] }
  assert.deepEqual(decodeGrant(encodeGrant(grant)), grant)
  assert.deepEqual(decodeCodeMessage(encodeCodeMessage(4, 'refused'), false), { code: 4, message: 'refused', lastStreamId: 0 })
  assert.deepEqual(decodeCodeMessage(encodeCodeMessage(0, 'bye', 9), true), { code: 0, message: 'bye', lastStreamId: 9 })
})

test('malformed frames and payloads are rejected with a typed error, never thrown', () => {
  const good = encodeFrame(FrameType.DATA, 1, Buffer.alloc(10))
  const cases: [string, Buffer][] = [
    ['short', Buffer.alloc(5)],
    ['version', Buffer.concat([Buffer.from([9]), good.subarray(1)])],
    ['unknown type', Buffer.from([1, 99, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0])],
    ['reserved', Buffer.from([1, FrameType.END, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0])],
    ['length mismatch', good.subarray(0, good.length - 1)],
    ['oversized DATA', (() => { const b = encodeFrame(FrameType.DATA, 1); b.writeUInt32BE(MAX_DATA + 1, 8); return b })()],
    ['oversized control', (() => { const b = encodeFrame(FrameType.OPEN, 1); b.writeUInt32BE(0xffffffff, 8); return b })()],
    ['DATA on stream 0', encodeFrame(FrameType.DATA, 0, Buffer.alloc(1))],
    ['PING on a stream', (() => { const b = encodePing(FrameType.PING, 1n); b.writeUInt32BE(3, 4); return b })()],
    ['PING of 7 bytes', encodeFrame(FrameType.PING, 0, Buffer.alloc(7))],
  ]
  for (const [name, buf] of cases) {
    const r = decodeFrame(buf)
    assert.ok(r instanceof TunnelError, name)
    assert.equal(r.code, 'EP_ERR_TUNNEL_PROTOCOL', name)
  }
  assert.equal(decodeOpen(Buffer.from([5, 1, 0, 80])), undefined) // bad family
  assert.equal(decodeOpen(Buffer.from([4, 1, 0, 80, 1, 2, 3, 4, 200, 97])), undefined) // name longer than the payload
  const hugeCount = Buffer.alloc(10); hugeCount.writeUInt16BE(65535, 8)
  assert.equal(decodeHello(hugeCount), undefined) // count bounded before any loop or allocation
  assert.equal(decodeCodeMessage(Buffer.from([0, 0, 0, 1, 0xff, 0xff]), false), undefined)
})

/** A raw ws connection with a valid token: sends HELLO, then whatever the test wants. */
async function rawSession (url: string): Promise<WebSocket> {
  const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token(['raw.tunnel.test'])}` } })
  await once(ws, 'open')
  ws.send(encodeFrame(FrameType.HELLO, 0, encodeHello({ streamWindow: 1 << 18, sessionWindow: 1 << 23, claims: [{ service: 'http', name: 'raw.tunnel.test' }] })))
  return ws
}

test('garbage and oversized frames close only that session, with a clear error; the edge keeps serving', async t => {
  const { edge, url } = await startEdge(t)
  const target = await tcpServer(t, sock => { sock.pipe(sock) })
  const client = startClient(t, url, [{ service: 'http', name: 'app.tunnel.test', to: `tcp://127.0.0.1:${target.port}` }])
  const good = await registered(edge, 'app.tunnel.test')
  if (client.sessions().length === 0) await once(client, 'session')
  assert.equal(client.sessions().length, 1)

  const closes: Error[] = []
  edge.on('session-close', (_s: Session, err: Error) => { closes.push(err) })

  const garbage = await rawSession(url)
  await registered(edge, 'raw.tunnel.test')
  garbage.send(Buffer.from('this is not a frame at all'))
  const [code] = await once(garbage, 'close') as [number]
  assert.equal(code, 1002)
  assert.equal((closes[0] as TunnelError).code, 'EP_ERR_TUNNEL_PROTOCOL')
  assert.match(closes[0]!.message, /malformed frame/)
  assert.equal(edge.lookup('raw.tunnel.test').length, 0)

  const oversized = await rawSession(url)
  await registered(edge, 'raw.tunnel.test')
  oversized.send(Buffer.alloc(HEADER_SIZE + MAX_DATA + 1))
  const [code2] = await once(oversized, 'close') as [number]
  assert.equal(code2, 1009) // ws refused it from the length field, before buffering
  assert.equal(edge.lookup('raw.tunnel.test').length, 0)

  const text = await rawSession(url)
  text.send('text')
  assert.equal((await once(text, 'close'))[0], 1002)

  // The well-behaved session is untouched and still carries streams.
  assert.equal(good.closed, false)
  const s = edge.openStream(good, { ...CLIENT, service: 'http', servername: 'app.tunnel.test' })
  s.end('ping')
  const chunks: Buffer[] = []
  for await (const c of s) chunks.push(c as Buffer)
  assert.equal(Buffer.concat(chunks).toString(), 'ping')
})

test('a peer that stops answering PINGs is declared dead', async t => {
  const { edge, url } = await startEdge(t, { session: { pingIntervalMs: 50, pingTimeoutMs: 100 } })
  const ws = await rawSession(url)
  t.after(() => ws.terminate())
  const session = await registered(edge, 'raw.tunnel.test')
  const [err] = await once(session, 'close') as [TunnelError]
  assert.equal(err.code, 'EP_ERR_TUNNEL_TIMEOUT')
  assert.equal(edge.lookup('raw.tunnel.test').length, 0)
})

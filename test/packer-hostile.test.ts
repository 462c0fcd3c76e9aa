// A hostile tunnel peer: control-frame floods it never reads, guessed PONGs, and frames built to throw.
// Raw sockets speak WebSocket by hand here, so a peer can stop reading while it keeps writing.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createHash, createHmac, randomBytes } from 'node:crypto'
import { connect, createServer, type Socket, type AddressInfo } from 'node:net'
import { WebSocket } from 'ws'
import { decodeFrame, encodeFrame, encodePing, encodeU32, FrameType } from '../packer/frame.js'
import { encodeCodeMessage, encodeGrant, encodeHello } from '../packer/payload.js'
import { TunnelError } from '../packer/errors.js'
import { TunnelClient } from '../packer/client.js'
import type { Session } from '../packer/session.js'
import { SECRET, startEdge, registered, token, sleep } from './packer-util.js'

const NAME = 'raw.tunnel.test'
/** maxBufferedBytes + one DATA frame + maxControlBytes (the defaults), plus slack for the frame that crosses it. */
const QUEUE_BOUND = 512 * 1024 + 64 * 1024 + 256 * 1024 + 4096

/** One WebSocket frame (binary, FIN); a client masks with a zero key, which leaves the payload as it is. */
function wsFrame (payload: Buffer, masked: boolean, opcode = 0x2): Buffer {
  const n = payload.length
  const len = n < 126 ? 2 : n < 65536 ? 4 : 10
  const head = Buffer.alloc(len + (masked ? 4 : 0))
  head[0] = 0x80 | opcode
  if (n < 126) head[1] = n
  else if (n < 65536) { head[1] = 126; head.writeUInt16BE(n, 2) } else { head[1] = 127; head.writeBigUInt64BE(BigInt(n), 2) }
  if (masked) head[1]! |= 0x80
  return Buffer.concat([head, payload])
}

const HELLO = encodeFrame(FrameType.HELLO, 0, encodeHello({ streamWindow: 1 << 18, sessionWindow: 1 << 23, claims: [{ service: 'http', name: NAME }] }))

/** A WebSocket upgrade by hand: resolves once the 101 head is read, with the socket paused (reading nothing more). */
async function rawUpgrade (port: number, bearer: string): Promise<Socket> {
  const sock = connect(port, '127.0.0.1')
  sock.on('error', () => {}) // the edge hangs up on the flooder: that is the point
  await once(sock, 'connect')
  sock.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer ${bearer}\r\n\r\n`)
  let head = ''
  while (!head.includes('\r\n\r\n')) {
    const [chunk] = await once(sock, 'data') as [Buffer]
    head += chunk.toString('latin1')
  }
  sock.pause()
  assert.match(head, /^HTTP\/1\.1 101 /)
  return sock
}

/**
 * Writes `chunk` over and over (with backpressure) until `stop()` says so, `maxBytes` are sent or `maxMs` pass;
 * calls `sample()` between writes. Returns the bytes written.
 */
async function flood (sock: Socket, chunk: Buffer, stop: () => boolean, sample: () => void, maxBytes = 50e6, maxMs = 4000): Promise<number> {
  const deadline = Date.now() + maxMs
  let sent = 0
  while (!stop() && !sock.destroyed && sent < maxBytes && Date.now() < deadline) {
    sent += chunk.length
    if (!sock.write(chunk)) await drained(sock)
    sample()
  }
  return sent
}

/** Resolves on 'drain', 'close' or after 50 ms; never rejects (events.once would, on the reset we provoke). */
function drained (sock: Socket): Promise<void> {
  return new Promise(resolve => {
    const done = (): void => { clearTimeout(timer); sock.off('drain', done); sock.off('close', done); resolve() }
    const timer = setTimeout(done, 50)
    sock.once('drain', done)
    sock.once('close', done)
  })
}

/** Records the session's unsent bytes after every frame it hands to ws: the true peak, not a sampled one. */
function trackQueue (session: Session): { max: number } {
  const peak = { max: 0 }
  const ws = session.ws
  const send = ws.send.bind(ws) as (...args: unknown[]) => void
  ws.send = ((...args: unknown[]) => { send(...args); peak.max = Math.max(peak.max, ws.bufferedAmount) }) as typeof ws.send
  return peak
}

test('a tunnel client that floods PINGs and never reads is dropped, with the edge\'s queue and memory bounded', async t => {
  const { edge } = await startEdge(t)
  const closes: Error[] = []
  edge.on('session-close', (_s: Session, err: Error) => { closes.push(err) })
  const sock = await rawUpgrade(edge.address().port, token([NAME]))
  t.after(() => sock.destroy())
  sock.write(wsFrame(HELLO, true))
  const session = await registered(edge, NAME)

  const ping = wsFrame(encodePing(FrameType.PING, 7n), true)
  const chunk = Buffer.concat(Array.from({ length: 40_000 }, () => ping)) // ~1 MB of PINGs a write
  const queue = trackQueue(session)
  const rss0 = process.memoryUsage().rss
  let maxRss = rss0
  const sample = (): void => { maxRss = Math.max(maxRss, process.memoryUsage().rss) }
  const timer = setInterval(sample, 5)
  t.after(() => { clearInterval(timer) })
  const sent = await flood(sock, chunk, () => session.closed, sample)
  // What is still in flight (in the kernel, on its way to the edge) is read after the writer stops.
  await closed(session, 5000)
  clearInterval(timer)
  const maxQueued = queue.max
  t.diagnostic(`flood: ${(sent / 1e6).toFixed(1)} MB of PINGs, edge queue peak ${maxQueued} B, rss +${((maxRss - rss0) / 1e6).toFixed(1)} MB`)

  assert.equal(session.closed, true, `session still open after ${(sent / 1e6).toFixed(1)} MB of unread PINGs`)
  assert.equal((session.closeError as TunnelError).code, 'EP_ERR_TUNNEL_FLOOD')
  assert.equal((closes[0] as TunnelError | undefined)?.code, 'EP_ERR_TUNNEL_FLOOD')
  assert.equal(edge.lookup(NAME).length, 0) // unregistered as for any lost session
  assert.ok(maxQueued <= QUEUE_BOUND, `edge queued ${maxQueued} bytes for a peer that reads nothing`)
  assert.ok(maxRss - rss0 < 128e6, `rss grew by ${maxRss - rss0} bytes`)
  // Dropped means the socket is gone, not waiting on a close handshake the flooder will never read.
  await waitFor(() => sock.destroyed || sock.readableEnded, 2000)
})

// ws bounds its own automatic pongs (maxPendingAutoPongs); pinned here so that bound is never switched off.
test('WebSocket-level pings that are never read end the connection too', async t => {
  const { edge } = await startEdge(t)
  const sock = await rawUpgrade(edge.address().port, token([NAME]))
  t.after(() => sock.destroy())
  sock.write(wsFrame(HELLO, true))
  const session = await registered(edge, NAME)
  const wsPing = wsFrame(Buffer.alloc(125, 1), true, 0x9)
  const sent = await flood(sock, Buffer.concat(Array.from({ length: 8000 }, () => wsPing)), () => session.closed, () => {}, 20e6)
  await closed(session, 5000)
  assert.equal(session.closed, true, `session still open after ${sent} bytes of WebSocket pings`)
})

test('PONGs guessed without reading the PINGs do not keep a session alive', async t => {
  const { edge, url } = await startEdge(t, { session: { pingIntervalMs: 50, pingTimeoutMs: 100 } })
  const ws = await rawClient(url)
  t.after(() => ws.terminate())
  const session = await registered(edge, NAME)
  // A counter payload (1, 2, 3...) would be answered ahead of time: send every likely value, read nothing.
  const guesses = Buffer.concat(Array.from({ length: 64 }, (_, i) => encodePing(FrameType.PONG, BigInt(i))))
  const timer = setInterval(() => { for (let i = 0; i < guesses.length; i += 20) ws.send(guesses.subarray(i, i + 20)) }, 10)
  t.after(() => { clearInterval(timer) })
  const err = await closed(session, 1500)
  assert.equal(err?.code, 'EP_ERR_TUNNEL_TIMEOUT')
  assert.equal(edge.lookup(NAME).length, 0)
})

test('a PONG that does not echo the PING exactly does not count; the exact echo keeps the session alive', async t => {
  const { edge, url } = await startEdge(t, { session: { pingIntervalMs: 50, pingTimeoutMs: 100 } })
  const payloads: Buffer[] = []
  const answer = (ws: WebSocket, alter: boolean): void => {
    ws.on('message', (data: Buffer) => {
      const f = decodeFrame(data)
      if (f instanceof TunnelError || f.type !== FrameType.PING) return
      payloads.push(Buffer.from(f.payload))
      const echo = Buffer.from(f.payload)
      if (alter) echo[7]! ^= 1
      ws.send(encodeFrame(FrameType.PONG, 0, echo))
    })
  }
  const wrong = await rawClient(url)
  t.after(() => wrong.terminate())
  answer(wrong, true)
  const wrongSession = await registered(edge, NAME)
  const [err] = await once(wrongSession, 'close') as [TunnelError]
  assert.equal(err.code, 'EP_ERR_TUNNEL_TIMEOUT')

  payloads.length = 0
  const right = await rawClient(url)
  t.after(() => right.terminate())
  answer(right, false)
  const rightSession = await registered(edge, NAME)
  await sleep(600) // several intervals and timeouts
  assert.equal(rightSession.closed, false)
  assert.ok(payloads.length >= 3, `${payloads.length} PINGs in 600 ms`)
  // 8 random bytes each: no two alike, and not a counter.
  assert.equal(new Set(payloads.map(p => p.toString('hex'))).size, payloads.length)
  assert.ok(payloads.some(p => p.readBigUInt64BE(0) > 0xffffffffn))
})

test('an edge that floods PINGs and never reads drops the tunnel client\'s session, not its memory', async t => {
  // A fake edge: accepts the upgrade, grants the name, then writes PINGs and reads nothing.
  const sockets = new Set<Socket>()
  let stopAt = 0
  const server = createServer(sock => {
    sockets.add(sock)
    sock.on('error', () => {})
    let head = ''
    const onData = (c: Buffer): void => {
      head += c.toString('latin1')
      if (!head.includes('\r\n\r\n')) return
      sock.off('data', onData)
      sock.pause()
      const key = /sec-websocket-key: *(\S+)/i.exec(head)?.[1] ?? ''
      const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64')
      sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`)
      sock.write(wsFrame(encodeFrame(FrameType.GRANT, 0, encodeGrant({ streamWindow: 1 << 18, sessionWindow: 1 << 23, granted: [{ service: 'http', name: NAME }], refused: [] })), false))
      const ping = wsFrame(encodePing(FrameType.PING, 7n), false)
      const chunk = Buffer.concat(Array.from({ length: 40_000 }, () => ping))
      stopAt = Date.now() + 4000
      void flood(sock, chunk, () => Date.now() > stopAt, () => {})
    }
    sock.on('data', onData)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => { stopAt = 0; for (const s of sockets) s.destroy(); server.close() })

  const client = new TunnelClient({ edges: [`ws://127.0.0.1:${(server.address() as AddressInfo).port}`], token: token([NAME]), routes: [{ service: 'http', name: NAME, to: 'tcp://127.0.0.1:9' }], backoff: { minMs: 60_000, maxMs: 60_000 } })
  client.start()
  t.after(() => client.close())
  const [, session] = await once(client, 'session') as [string, Session]
  const queue = trackQueue(session)
  const lost = once(client, 'disconnect') as Promise<[string, TunnelError | undefined]>
  const err = await closed(session, 6000)
  stopAt = 0
  assert.equal(err?.code, 'EP_ERR_TUNNEL_FLOOD')
  assert.equal((await lost)[1]?.code, 'EP_ERR_TUNNEL_FLOOD') // the client says why it lost the edge
  assert.ok(queue.max <= QUEUE_BOUND, `client queued ${queue.max} bytes for an edge that reads nothing`)
})

test('hostile frames close only their own session; the edge keeps serving', async t => {
  const { edge, url } = await startEdge(t)
  const good = await rawClient(url, 'good.tunnel.test')
  t.after(() => good.terminate())
  const goodSession = await registered(edge, 'good.tunnel.test')
  const resetBadUtf8 = Buffer.concat([encodeCodeMessage(1, ''), Buffer.from([0xff, 0xfe, 0xc3])]); resetBadUtf8.writeUInt16BE(3, 4)
  const goawayBadUtf8 = Buffer.concat([encodeCodeMessage(1, '', 0), Buffer.from([0xc3, 0x28])]); goawayBadUtf8.writeUInt16BE(2, 8)
  const cases: [string, Buffer[], 'EP_ERR_TUNNEL_PROTOCOL' | 'EP_ERR_TUNNEL_FLOW_CONTROL' | 'open'][] = [
    ['unknown type', [Buffer.from([1, 200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])], 'EP_ERR_TUNNEL_PROTOCOL'],
    ['length past the message', [(() => { const b = encodeU32(FrameType.WINDOW_UPDATE, 0, 1); b.writeUInt32BE(0xfffffff0, 8); return b })()], 'EP_ERR_TUNNEL_PROTOCOL'],
    ['PING on a stream', [(() => { const b = encodePing(FrameType.PING, 1n); b.writeUInt32BE(5, 4); return b })()], 'EP_ERR_TUNNEL_PROTOCOL'],
    ['WINDOW_UPDATE for a stream never opened', [encodeU32(FrameType.WINDOW_UPDATE, 99, 1)], 'EP_ERR_TUNNEL_PROTOCOL'],
    ['session window past 2^31-1', [encodeU32(FrameType.WINDOW_UPDATE, 0, 0xffffffff)], 'EP_ERR_TUNNEL_FLOW_CONTROL'],
    ['DATA for a stream never opened', [encodeFrame(FrameType.DATA, 7, Buffer.from('x'))], 'EP_ERR_TUNNEL_PROTOCOL'],
    ['RESET with bad UTF-8, for a stream never opened', [encodeFrame(FrameType.RESET, 3, resetBadUtf8)], 'EP_ERR_TUNNEL_PROTOCOL'],
    ['OPEN with an odd (edge) id', [encodeFrame(FrameType.OPEN, 1, Buffer.from([4, 1, 0, 80, 1, 2, 3, 4, 0]))], 'EP_ERR_TUNNEL_PROTOCOL'],
    ['OPEN that is malformed', [encodeFrame(FrameType.OPEN, 2, Buffer.from([9, 9, 9]))], 'EP_ERR_TUNNEL_PROTOCOL'],
    ['a second HELLO', [HELLO], 'EP_ERR_TUNNEL_PROTOCOL'],
    ['GOAWAY with bad UTF-8 drains, never throws', [encodeFrame(FrameType.GOAWAY, 0, goawayBadUtf8)], 'open'],
    ['OPEN from the backend is refused, the session lives', [encodeFrame(FrameType.OPEN, 2, Buffer.from([4, 1, 0, 80, 1, 2, 3, 4, 0]))], 'open'],
  ]
  for (const [name, frames, expect] of cases) {
    const ws = await rawClient(url)
    t.after(() => ws.terminate())
    const session = await registered(edge, NAME)
    for (const f of frames) ws.send(f)
    if (expect !== 'open') {
      const err = await closed(session, 1000)
      assert.equal(err?.code, expect, name)
    } else {
      await sleep(50)
      assert.equal(session.closeError, undefined, name)
      session.destroy()
    }
  }
  // HELLOs that are malformed in their names or settings.
  for (const payload of [Buffer.from([0, 4, 0, 0, 0, 8, 0, 0, 0, 1, 1, 3, 0xff, 0xfe, 0xfd]), Buffer.alloc(3), Buffer.alloc(10)]) {
    const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token([NAME])}` } })
    t.after(() => ws.terminate())
    const [session] = await once(edge, 'session') as [Session]
    await once(ws, 'open')
    ws.send(encodeFrame(FrameType.HELLO, 0, payload))
    const [err] = await once(session, 'close') as [TunnelError]
    assert.equal(err.code, 'EP_ERR_TUNNEL_PROTOCOL', payload.toString('hex'))
  }
  // A correctly signed token whose claims are not JSON: 401, nothing thrown.
  const input = `${Buffer.from('{"alg":"HS256","typ":"JWT"}').toString('base64url')}.${Buffer.from('{"sub":').toString('base64url')}`
  const forged = `${input}.${createHmac('sha256', SECRET).update(input).digest('base64url')}`
  const refused = new WebSocket(url, { headers: { authorization: `Bearer ${forged}` } })
  refused.on('error', () => {})
  const [, res] = await once(refused, 'unexpected-response') as [unknown, { statusCode: number, headers: Record<string, string> }]
  assert.equal(res.statusCode, 401)
  assert.equal(res.headers['x-tunnel-error'], 'EP_ERR_TOKEN_MALFORMED')
  refused.terminate()

  assert.equal(goodSession.closed, false)
  assert.equal(edge.lookup('good.tunnel.test').length, 1)
})

test('an exception thrown while a frame is handled (even a non-Error) closes that session, not the process', async t => {
  const { edge, url } = await startEdge(t)
  let throwIt = true
  edge.on('register', () => { if (throwIt) throw Object.create(null) as unknown }) // not even String() works on it
  const opened = once(edge, 'session') as Promise<[Session]>
  const ws = await rawClient(url)
  t.after(() => ws.terminate())
  const [session] = await opened
  await closed(session, 2000)
  assert.match(session.closeError?.message ?? '', /non-Error/)
  throwIt = false
  const again = await rawClient(url)
  t.after(() => again.terminate())
  assert.equal((await registered(edge, NAME)).closed, false)
})

test('a stream\'s window of 1-byte DATA frames is held in a few chunks, not one per frame; order and window survive', async t => {
  const { edge, url } = await startEdge(t)
  const ws = await rawClient(url)
  t.after(() => ws.terminate())
  const session = await registered(edge, NAME)
  let credited = 0
  const opened = new Promise<number>(resolve => {
    ws.on('message', (data: Buffer) => {
      const f = decodeFrame(data)
      if (f instanceof TunnelError) return
      if (f.type === FrameType.OPEN) resolve(f.streamId)
      if (f.type === FrameType.WINDOW_UPDATE && f.streamId !== 0) credited += f.payload.readUInt32BE(0)
    })
  })
  const s = session.openStream({ family: 4, address: '203.0.113.9', port: 40000, service: 'http', servername: NAME })
  s.on('error', () => {})
  const id = await opened
  const window = session.localSettings.streamWindow
  // One window's worth, nobody reading: 1-byte frames (a counter, so order shows), a few big ones in between.
  const expected: Buffer[] = []
  let sent = 0
  for (let i = 0; sent < window; i++) {
    const payload = i % 50_000 === 49_999 ? Buffer.alloc(Math.min(4096, window - sent), i & 0xff) : Buffer.from([i & 0xff])
    expected.push(payload)
    ws.send(encodeFrame(FrameType.DATA, id, payload))
    sent += payload.length
    if (ws.bufferedAmount > 1 << 20) await sleep(1)
  }
  await waitFor(() => s.recvTotal === window, 5000)
  const chunks = (s as unknown as { readableBuffer: { length: number } }).readableBuffer.length
  t.diagnostic(`${window} bytes in 1-byte frames: ${chunks} chunks buffered`)
  assert.ok(chunks < 100, `${chunks} chunks buffered for one window`) // one per 1-byte frame before: 262,000
  await sleep(20)
  assert.equal(credited, 0) // held bytes are not consumed: no window goes back for them
  ws.send(encodeFrame(FrameType.END, id))
  const got: Buffer[] = []
  for await (const c of s) got.push(c as Buffer)
  assert.ok(Buffer.concat(got).equals(Buffer.concat(expected)), 'bytes out of order or lost')
  // Read, they earn the window back (the last quarter after END is not returned: the stream is done).
  await waitFor(() => credited >= window / 2, 2000)
})

/** A ws client with a valid token that sends HELLO and otherwise does only what the test says. */
async function rawClient (url: string, name = NAME): Promise<WebSocket> {
  const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token([name])}` } })
  ws.on('error', () => {})
  await once(ws, 'open')
  ws.send(encodeFrame(FrameType.HELLO, 0, encodeHello({ streamWindow: 1 << 18, sessionWindow: 1 << 23, claims: [{ service: 'http', name }] })))
  return ws
}

/** The session's close error once it closes, or undefined after `ms` (the timer does not outlive the test). */
async function closed (session: Session, ms: number): Promise<TunnelError | undefined> {
  if (session.closed) return session.closeError as TunnelError | undefined
  let timer: NodeJS.Timeout | undefined
  const err = await new Promise<TunnelError | undefined>(resolve => {
    timer = setTimeout(() => { resolve(undefined) }, ms)
    session.once('close', resolve)
  })
  clearTimeout(timer)
  return err
}

async function waitFor (cond: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) assert.fail('condition not met in time')
    await sleep(10)
  }
}

// WebSocket through the edge with the `ws` package at both ends: text and binary frames both ways, the
// handshake routed and forwarded like a request, and closes propagating in each direction.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import WebSocket, { WebSocketServer } from 'ws'
import { BASE_TOML, refusedUrl, startBackend, startEdge, waitUntil } from './helpers.js'

interface ServerSide { socket: WebSocket, req: IncomingMessage, closed?: { code: number, reason: string } }

async function setup (t: Parameters<typeof startBackend>[0]): Promise<{ port: number, sides: ServerSide[] }> {
  const b = await startBackend(t, 'ws-backend')
  const wss = new WebSocketServer({ server: b.server })
  const sides: ServerSide[] = []
  wss.on('connection', (socket, req) => {
    const side: ServerSide = { socket, req }
    sides.push(side)
    socket.send('welcome') // server -> client without being asked
    socket.on('message', (data, isBinary) => {
      if (!isBinary && data.toString() === 'close-please') { socket.close(4002, 'server says bye'); return }
      socket.send(data, { binary: isBinary })
    })
    socket.on('close', (code, reason) => { side.closed = { code, reason: reason.toString() } })
  })
  t.after(() => { for (const c of wss.clients) c.terminate(); wss.close() })
  const refused = await refusedUrl()
  const { port } = await startEdge(t, `${BASE_TOML}
[[routes]]
match.path_prefix = "/ws/"
strip_prefix = true
pool = "p"
[[routes]]
match.path_prefix = "/dead/"
pool = "dead"
[pools.p]
backends = ["${b.url}"]
[pools.dead]
backends = ["${refused}"]
`)
  return { port, sides }
}

/** Opens a client and collects its messages; resolves once open and the welcome has arrived. */
async function connect (port: number, path: string): Promise<{ ws: WebSocket, messages: Array<{ data: Buffer, isBinary: boolean }>, closed: Promise<{ code: number, reason: string }> }> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, { headers: { host: 'chat.test' } })
  const messages: Array<{ data: Buffer, isBinary: boolean }> = []
  ws.on('message', (data, isBinary) => { messages.push({ data: data as Buffer, isBinary }) })
  const closed = new Promise<{ code: number, reason: string }>(resolve => {
    ws.on('close', (code, reason) => { resolve({ code, reason: reason.toString() }) })
  })
  await new Promise<void>((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
  await waitUntil(() => messages.length >= 1, 3000, 'the welcome message')
  return { ws, messages, closed }
}

test('websocket: text and binary echo both ways, handshake routed and forwarded', async t => {
  const { port, sides } = await setup(t)
  const c = await connect(port, '/ws/chat?room=1')
  t.after(() => { c.ws.terminate() })
  assert.equal(c.messages[0]?.data.toString(), 'welcome')
  assert.equal(c.messages[0]?.isBinary, false)

  const side = sides[0] as ServerSide
  assert.equal(side.req.url, '/chat?room=1', 'strip_prefix applies to the handshake')
  assert.equal(side.req.headers.host, 'chat.test')
  assert.equal(side.req.headers['x-forwarded-for'], '127.0.0.1')
  assert.equal(side.req.headers.via, '1.1 edge-proxy')
  assert.ok(typeof side.req.headers['x-request-id'] === 'string')

  c.ws.send('hello, text')
  const bin = randomBytes(200_000)
  c.ws.send(bin)
  c.ws.send('ünïcödé ✓')
  await waitUntil(() => c.messages.length >= 4, 5000, 'three echoes')
  assert.equal(c.messages[1]?.data.toString(), 'hello, text')
  assert.equal(c.messages[1]?.isBinary, false)
  assert.equal(c.messages[2]?.isBinary, true)
  assert.ok(c.messages[2]?.data.equals(bin), 'binary frame intact')
  assert.equal(c.messages[3]?.data.toString(), 'ünïcödé ✓')

  // Server -> client binary, unprompted.
  const push = randomBytes(70_000)
  side.socket.send(push, { binary: true })
  await waitUntil(() => c.messages.length >= 5, 5000, 'the pushed frame')
  assert.ok(c.messages[4]?.data.equals(push))
  assert.equal(c.messages[4]?.isBinary, true)
})

test('websocket: a client close reaches the backend with its code and reason', async t => {
  const { port, sides } = await setup(t)
  const c = await connect(port, '/ws/a')
  c.ws.close(4001, 'client says bye')
  const got = await c.closed
  assert.equal(got.code, 4001)
  await waitUntil(() => sides[0]?.closed !== undefined, 3000, 'the backend to see the close')
  assert.deepEqual(sides[0]?.closed, { code: 4001, reason: 'client says bye' })
})

test('websocket: a backend close reaches the client with its code and reason', async t => {
  const { port } = await setup(t)
  const c = await connect(port, '/ws/b')
  c.ws.send('close-please')
  assert.deepEqual(await c.closed, { code: 4002, reason: 'server says bye' })
})

test('websocket: a backend that vanishes closes the client abnormally (1006)', async t => {
  const { port, sides } = await setup(t)
  const c = await connect(port, '/ws/c')
  sides[0]?.socket.terminate()
  assert.equal((await c.closed).code, 1006)
})

test('websocket: no route -> 404, refused backend -> 502, both before any upgrade', async t => {
  const { port } = await setup(t)
  const status = (path: string): Promise<number> => new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`)
    ws.on('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0); ws.terminate() })
    ws.on('open', () => { reject(new Error(`${path} was upgraded`)) })
    ws.on('error', () => {})
  })
  assert.equal(await status('/nowhere'), 404)
  assert.equal(await status('/dead/x'), 502)
})

test('websocket: closing the edge ends open tunnels once its drain timeout is over', async t => {
  const b = await startBackend(t, 'ws-backend')
  const wss = new WebSocketServer({ server: b.server })
  wss.on('connection', socket => { socket.send('welcome') })
  t.after(() => { wss.close() })
  const { edge, port } = await startEdge(t, `${BASE_TOML}
[[routes]]
pool = "p"
[pools.p]
backends = ["${b.url}"]
`)
  const c = await connect(port, '/')
  const started = Date.now()
  let limit: NodeJS.Timeout | undefined
  await Promise.race([
    edge.close(200),
    new Promise((_resolve, reject) => { limit = setTimeout(() => { reject(new Error('edge.close() hangs on an open WebSocket')) }, 3000) }),
  ]).finally(() => { clearTimeout(limit) })
  assert.ok(Date.now() - started >= 150, 'the tunnel had its drain time')
  assert.equal((await c.closed).code, 1006)
})

// Tunnels end to end, when things go wrong: two clients on one name share load and one is killed; the edge
// restarts and the client comes back within its backoff; a client that sends garbage or oversized frames loses
// its session while the edge keeps serving everything else.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { WebSocket } from 'ws'
import { FrameType, encodeFrame } from '../packer/frame.js'
import { encodeHello } from '../packer/payload.js'
import { APP_POOL, deadline, edgeStatus, httpServer, mintToken, request, sleep, startEdge, startRegisteredTunnel, type Reply } from './tunnel-edge-util.js'

function whoami (id: string) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    // /slow answers after a while: a request in flight when its tunnel dies.
    if (req.url === '/slow') { setTimeout(() => { res.end(id) }, 3000).unref(); return }
    res.end(id)
  }
}

test('two tunnel clients on one name share load; SIGKILL one and new requests go to the other', async t => {
  const edge = await startEdge(t)
  const a = await httpServer(t, whoami('a'))
  const b = await httpServer(t, whoami('b'))
  const ta = await startRegisteredTunnel(t, edge, 'app.tunnel.test', a.url)
  const tb = await startRegisteredTunnel(t, edge, 'app.tunnel.test', b.url)
  const counts: Record<string, number> = {}
  for (let i = 0; i < 20; i++) {
    const r = await request(edge.ports.http, 'app.tunnel.test')
    assert.equal(r.status, 200, r.body)
    counts[r.body] = (counts[r.body] ?? 0) + 1
  }
  assert.ok((counts.a ?? 0) >= 5 && (counts.b ?? 0) >= 5, `both clients serve: ${JSON.stringify(counts)}`)

  // Requests in flight on both tunnels; then client a dies without a word.
  const inflight = Array.from({ length: 6 }, () => request(edge.ports.http, 'app.tunnel.test', '/slow').then((r): Reply | Error => r, (e: Error) => e))
  await sleep(300)
  const from = edge.log.mark
  ta.child.kill('SIGKILL')
  await edge.log.wait(/"msg":"tunnel unregistered"/, 5000, from)
  for (let i = 0; i < 20; i++) {
    const r = await request(edge.ports.http, 'app.tunnel.test')
    assert.equal(r.status, 200, `request ${i} after the unregister: ${r.status} ${r.body}`)
    assert.equal(r.body, 'b')
  }
  // The in-flight ones end cleanly: b's finish, a's fail with 502 (never a hang, never a body from a).
  const settled = await Promise.all(inflight)
  const outcomes = settled.map(r => r instanceof Error ? 'error' : r.status === 200 ? r.body : String(r.status))
  t.diagnostic(`in flight when a died: ${outcomes.join(', ')}`)
  assert.equal(outcomes.filter(o => o === 'b').length, 3, outcomes.join(','))
  assert.ok(outcomes.every(o => o === 'b' || o === '502' || o === 'error'), outcomes.join(','))
  const st = await edgeStatus(edge)
  assert.equal(st.tunnels?.sessions.length, 1)
  // The last one goes too: 503 at once, not a hang.
  const last = edge.log.mark
  tb.child.kill('SIGKILL')
  await edge.log.wait(/"msg":"tunnel unregistered"/, 5000, last)
  const gone = await request(edge.ports.http, 'app.tunnel.test')
  assert.equal(gone.status, 503, gone.body)
})

test('a client that drains (SIGTERM) finishes its in-flight requests; new ones go to the other client', async t => {
  const edge = await startEdge(t)
  const a = await httpServer(t, whoami('a'))
  const b = await httpServer(t, whoami('b'))
  const ta = await startRegisteredTunnel(t, edge, 'app.tunnel.test', a.url)
  await startRegisteredTunnel(t, edge, 'app.tunnel.test', b.url)
  const inflight = Array.from({ length: 4 }, () => request(edge.ports.http, 'app.tunnel.test', '/slow').then((r): Reply | Error => r, (e: Error) => e))
  await sleep(300)
  const from = edge.log.mark
  ta.child.kill('SIGTERM')
  await edge.log.wait(/"msg":"tunnel unregistered"/, 5000, from)
  for (let i = 0; i < 10; i++) assert.equal((await request(edge.ports.http, 'app.tunnel.test')).body, 'b')
  const outcomes = (await Promise.all(inflight)).map(r => r instanceof Error ? r.message : `${r.status} ${r.body}`)
  assert.deepEqual(outcomes.sort(), ['200 a', '200 a', '200 b', '200 b'])
  const [code] = await once(ta.child, 'exit')
  assert.equal(code, 0)
})

test('restarting the edge on the same ports: the client is back within its backoff', async t => {
  const first = await startEdge(t)
  const backend = await httpServer(t, whoami('back'))
  const tun = await startRegisteredTunnel(t, first, 'app.tunnel.test', backend.url)
  assert.equal((await request(first.ports.http, 'app.tunnel.test')).body, 'back')
  const lostAt = tun.log.mark
  await first.stop()
  await tun.log.wait(/lost ws:/, 5000, lostAt)
  const stopped = performance.now()
  const second = await startEdge(t, { ports: first.ports })
  // The CLI's backoff: 1 s, then uniform in 1..2 s, 1..4 s... after each failed dial; an edge that is down
  // under a second is reached on the first or second redial.
  await second.log.wait(/"msg":"tunnel registered"/, 20_000)
  const back = (performance.now() - stopped) / 1000
  const r = await request(second.ports.http, 'app.tunnel.test')
  assert.equal(r.status, 200, r.body)
  assert.equal(r.body, 'back')
  assert.equal(tun.child.exitCode, null)
  t.diagnostic(`client re-registered ${back.toFixed(2)} s after the edge stopped`)
})

/** A raw tunnel client: a valid token, then whatever bytes the test sends. */
async function rawSession (port: number, name: string): Promise<WebSocket> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}`, { headers: { authorization: `Bearer ${mintToken([name])}` }, perMessageDeflate: false })
  ws.on('error', () => {})
  await once(ws, 'open')
  return ws
}

function hello (name: string): Buffer {
  return encodeFrame(FrameType.HELLO, 0, encodeHello({ streamWindow: 256 * 1024, sessionWindow: 8 * 1024 * 1024, claims: [{ service: 'http', name }] }))
}

test('garbage and oversized frames close that session only; the edge keeps serving HTTP and other tunnels', async t => {
  const edge = await startEdge(t, { extra: `${APP_POOL}
[[routes]]
name = "plain"
match.host = "plain.test"
respond = { status = 200, body = "plain\\n" }
` })
  const backend = await httpServer(t, whoami('good'))
  await startRegisteredTunnel(t, edge, 'app.tunnel.test', backend.url)
  const attacks: Array<{ what: string, codes: number[], send: (ws: WebSocket) => void }> = [
    { what: 'text message', codes: [1002], send: ws => { ws.send('hello?') } },
    { what: 'random bytes before HELLO', codes: [1002], send: ws => { ws.send(Buffer.from('this is not a tunnel frame at all')) } },
    { what: 'frame after HELLO with a lying length', codes: [1002], send: ws => { ws.send(hello('bad.tunnel.test')); const f = encodeFrame(FrameType.PING, 0, Buffer.alloc(8)); f.writeUInt32BE(9000, 8); ws.send(f) } },
    { what: 'unknown frame type after HELLO', codes: [1002], send: ws => { ws.send(hello('bad.tunnel.test')); ws.send(encodeFrame(99, 0, Buffer.alloc(4))) } },
    { what: 'oversized control frame (20 KB OPEN)', codes: [1002], send: ws => { ws.send(hello('bad.tunnel.test')); ws.send(encodeFrame(FrameType.OPEN, 2, Buffer.alloc(20_000))) } },
    { what: 'oversized message (1 MB)', codes: [1009], send: ws => { ws.send(hello('bad.tunnel.test')); ws.send(Buffer.alloc(1024 * 1024, 0xff)) } },
    { what: 'second HELLO', codes: [1002], send: ws => { ws.send(hello('bad.tunnel.test')); ws.send(hello('bad.tunnel.test')) } },
  ]
  for (const a of attacks) {
    const ws = await rawSession(edge.ports.tunnel, 'bad.tunnel.test')
    t.after(() => ws.terminate())
    const closed = once(ws, 'close')
    a.send(ws)
    const [code] = await Promise.race([closed, deadline(5000, [-1])]) as [number]
    assert.ok(a.codes.includes(code), `${a.what}: closed with ${code}`)
    // Everything else still works at once.
    assert.equal((await request(edge.ports.http, 'app.tunnel.test')).body, 'good', a.what)
    assert.equal((await request(edge.ports.http, 'plain.test')).body, 'plain\n', a.what)
    // Not served: no route (404), or "tunnel offline" (503) when the session got as far as registering its HELLO.
    const bad = await request(edge.ports.http, 'bad.tunnel.test')
    assert.ok(bad.status === 404 || (bad.status === 503 && bad.body.includes('tunnel offline')), `${a.what}: the bad name is not routed (${bad.status} ${bad.body})`)
  }

  // A session that is serving a request and then sends garbage: that request fails cleanly (502), nothing else.
  const ws = await rawSession(edge.ports.tunnel, 'bad.tunnel.test')
  t.after(() => ws.terminate())
  const from = edge.log.mark
  ws.send(hello('bad.tunnel.test'))
  await edge.log.wait(/"name":"bad\.tunnel\.test".*"msg":"tunnel registered"/, 5000, from)
  ws.on('message', (m: Buffer) => {
    if (m[1] === FrameType.OPEN) ws.send(Buffer.concat([encodeFrame(FrameType.DATA, m.readUInt32BE(4), Buffer.from('HTTP/1.1 200 OK\r\n')).subarray(0, 20), Buffer.alloc(3)]))
  })
  const victim = await request(edge.ports.http, 'bad.tunnel.test')
  assert.equal(victim.status, 502, victim.body)
  assert.equal((await request(edge.ports.http, 'app.tunnel.test')).body, 'good')
  const after = await request(edge.ports.http, 'bad.tunnel.test')
  assert.equal(after.status, 503, after.body) // its session is gone: "tunnel offline"
  assert.match(after.body, /tunnel offline/)
  const st = await edgeStatus(edge)
  assert.deepEqual(st.tunnels?.sessions.map(s => s.names.map(n => n.name)).flat(), ['app.tunnel.test'])
})

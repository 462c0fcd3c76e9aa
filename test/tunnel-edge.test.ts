// Tunnels end to end, with real processes: `edge-proxy --config` and `edge-proxy tunnel` over loopback.
// Tokens from `edge-proxy token`; refusals; HTTP through an explicit tunnel pool and through auto_route;
// X-Forwarded-For; WebSocket through a tunnel.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import http from 'node:http'
import { WebSocket, WebSocketServer } from 'ws'
import { edgeStatus, httpServer, mintToken, request, sleep, startEdge, startRegisteredTunnel, startTunnel } from './tunnel-edge-util.js'

/** A backend that answers with who it is and what it saw. */
function echo (id: string) {
  return (req: http.IncomingMessage, res: http.ServerResponse): void => {
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ id, host: req.headers.host, path: req.url, xff: req.headers['x-forwarded-for'], xfh: req.headers['x-forwarded-host'] }))
  }
}

test('refused tokens: bad signature, expired, name not allowed -> 401 / nothing granted, and no route appears', async t => {
  const edge = await startEdge(t)
  const backend = await httpServer(t, echo('b'))
  const cases = [
    { name: 'app.tunnel.test', token: mintToken(['app.tunnel.test'], { secret: 'not-the-edge-secret-0123456789abcdef' }), client: /401.*EP_ERR_TOKEN_BAD_SIGNATURE/, edge: /EP_ERR_TOKEN_BAD_SIGNATURE|signature does not match/ },
    { name: 'app.tunnel.test', token: mintToken(['app.tunnel.test'], { ttl: '1s' }), client: /401.*EP_ERR_TOKEN_EXPIRED/, edge: /token expired/, wait: 2100 },
    // Signed correctly, but the edge's allow list does not cover the name: the session gets no grant.
    { name: 'app.other.test', token: mintToken(['app.other.test']), client: /granted nothing; refused http:app\.other\.test/ },
    // The token does not carry the name the client asks for.
    { name: 'app.tunnel.test', token: mintToken(['else.tunnel.test']), client: /granted nothing; refused http:app\.tunnel\.test/ },
  ]
  for (const c of cases) {
    if (c.wait !== undefined) await sleep(c.wait)
    const from = edge.log.mark
    const tun = startTunnel(t, edge.ports.tunnel, c.token, c.name, backend.url)
    const exited = once(tun.child, 'exit')
    await tun.log.wait(c.client)
    if (c.edge !== undefined) await edge.log.wait(c.edge, 5000, from)
    // A refusal is final: the client says so and exits 2 instead of retrying with the same token.
    await tun.log.wait(/not retrying \(exit 2\)/)
    assert.deepEqual(await exited, [2, null])
    assert.equal(edge.log.count(/tunnel registered/), 0)
  }
  // No route for either name: the explicit pool has no members (503), the other name has no route (404).
  assert.equal((await request(edge.ports.http, 'app.tunnel.test')).status, 503)
  assert.equal((await request(edge.ports.http, 'app.other.test')).status, 404)
  assert.deepEqual((await edgeStatus(edge)).tunnels?.sessions, [])
})

test('HTTP through an explicit tunnel pool and through auto_route; X-Forwarded-For is the real client', async t => {
  const edge = await startEdge(t)
  const app = await httpServer(t, echo('app'))
  const auto = await httpServer(t, echo('auto'))
  assert.equal((await request(edge.ports.http, 'app.tunnel.test')).status, 503) // pool exists, no member yet
  assert.equal((await request(edge.ports.http, 'auto.tunnel.test')).status, 404) // no route, nothing claimed
  await startRegisteredTunnel(t, edge, 'app.tunnel.test', app.url)
  await startRegisteredTunnel(t, edge, 'auto.tunnel.test', auto.url)

  // 127.0.0.2 is a loopback address the backend side never uses: seeing it proves the edge passed the client on.
  for (let i = 0; i < 5; i++) {
    const r = await request(edge.ports.http, 'app.tunnel.test', `/x/${i}?q=1`, { localAddress: '127.0.0.2' })
    assert.equal(r.status, 200, r.body)
    assert.deepEqual(JSON.parse(r.body), { id: 'app', host: 'app.tunnel.test', path: `/x/${i}?q=1`, xff: '127.0.0.2', xfh: 'app.tunnel.test' })
  }
  const r = await request(edge.ports.http, 'AUTO.tunnel.test:80', '/auto', { localAddress: '127.0.0.3' })
  assert.equal(r.status, 200, r.body)
  assert.deepEqual(JSON.parse(r.body).id, 'auto')
  assert.equal(JSON.parse(r.body).xff, '127.0.0.3')
  // POST bodies go through too.
  const post = await httpServer(t, (req, res) => { const c: Buffer[] = []; req.on('data', (d: Buffer) => c.push(d)); req.on('end', () => res.end(Buffer.concat(c).toString().toUpperCase())) })
  await startRegisteredTunnel(t, edge, 'post.tunnel.test', post.url)
  const p = await request(edge.ports.http, 'post.tunnel.test', '/', { method: 'POST', body: 'hello tunnel', headers: { 'content-type': 'text/plain' } })
  assert.equal(p.body, 'HELLO TUNNEL')

  const st = await edgeStatus(edge)
  assert.deepEqual(st.tunnels?.sessions.map(s => s.names.map(n => n.name)).flat().sort(), ['app.tunnel.test', 'auto.tunnel.test', 'post.tunnel.test'])
})

test('WebSocket echo through a tunnel (explicit pool and auto_route)', async t => {
  const edge = await startEdge(t)
  const backend = await httpServer(t, echo('ws'))
  const wss = new WebSocketServer({ server: backend.server })
  const seen: string[] = []
  wss.on('connection', (ws, req) => {
    seen.push(String(req.headers['x-forwarded-for']))
    ws.on('message', (data, isBinary) => { ws.send(data, { binary: isBinary }) })
  })
  t.after(() => { for (const c of wss.clients) c.terminate(); wss.close() })
  await startRegisteredTunnel(t, edge, 'app.tunnel.test', backend.url)
  await startRegisteredTunnel(t, edge, 'wsauto.tunnel.test', backend.url)
  for (const host of ['app.tunnel.test', 'wsauto.tunnel.test']) {
    const ws = new WebSocket(`ws://127.0.0.1:${edge.ports.http}/chat`, { headers: { host }, localAddress: '127.0.0.4' })
    t.after(() => ws.terminate())
    await once(ws, 'open')
    const big = Buffer.alloc(300_000, 7) // larger than a stream window: flow control both ways
    for (const msg of ['one', 'two', big]) {
      ws.send(msg)
      const [data] = await once(ws, 'message') as [Buffer]
      assert.deepEqual(data, Buffer.from(msg))
    }
    ws.close()
    await once(ws, 'close')
  }
  assert.deepEqual(seen, ['127.0.0.4', '127.0.0.4'])
})

test('auto_route with a wildcard claim: every host under it shares one auto pool (no per-host state)', async t => {
  const edge = await startEdge(t)
  const backend = await httpServer(t, echo('wild'))
  await startRegisteredTunnel(t, edge, '*.dyn.tunnel.test', backend.url)
  // Hosts are the client's to choose: 100 distinct ones must not make 100 routes, pools and metric series.
  for (let i = 0; i < 100; i++) {
    const r = await request(edge.ports.http, `h${i}.dyn.tunnel.test`, '/')
    assert.equal(r.status, 200, r.body)
    assert.equal(JSON.parse(r.body).host, `h${i}.dyn.tunnel.test`)
  }
  assert.equal((await request(edge.ports.http, 'dyn.tunnel.test')).status, 404) // the apex is not claimed
  const metrics = (await request(edge.admin, '127.0.0.1', '/metrics')).body
  const routes = new Set([...metrics.matchAll(/edge_requests_total\{route="([^"]*)"/g)].map(m => m[1]))
  assert.deepEqual([...routes].filter(r => r?.startsWith('tunnel:')), ['tunnel:*.dyn.tunnel.test'])
})

test('a tunnel whose local target is down answers 502 at once; a config reload keeps tunnel members', async t => {
  const edge = await startEdge(t)
  const dead = await httpServer(t, echo('gone'))
  dead.server.close() // the port is free now: the tunnel client's connect is refused
  await startRegisteredTunnel(t, edge, 'down.tunnel.test', dead.url)
  const started = performance.now()
  const r = await request(edge.ports.http, 'down.tunnel.test')
  assert.equal(r.status, 502, r.body)
  assert.ok(performance.now() - started < 3000)
  // The same for a WebSocket upgrade: a 502 answer, not a dropped connection.
  const ws = new WebSocket(`ws://127.0.0.1:${edge.ports.http}/`, { headers: { host: 'down.tunnel.test' } })
  ws.on('error', () => {}) // terminate() below, on a refused handshake, reports one
  const [, res] = await once(ws, 'unexpected-response') as [unknown, http.IncomingMessage]
  assert.equal(res.statusCode, 502)
  ws.terminate()

  const app = await httpServer(t, echo('app'))
  await startRegisteredTunnel(t, edge, 'app.tunnel.test', app.url)
  assert.equal((await request(edge.ports.http, 'app.tunnel.test')).status, 200)
  const from = edge.log.mark
  edge.child.kill('SIGHUP')
  await edge.log.wait(/"msg":"config reloaded"/, 5000, from)
  for (let i = 0; i < 3; i++) {
    const after = await request(edge.ports.http, 'app.tunnel.test')
    assert.equal(after.status, 200, after.body)
    assert.equal(JSON.parse(after.body).id, 'app')
  }
  assert.equal((await request(edge.ports.http, 'down.tunnel.test')).status, 502) // auto_route still there too
  assert.equal(edge.log.count(/tunnel unregistered/), 0)
})

test('concurrent requests through one tunnel: all answered, keep-alive streams reused', async t => {
  const edge = await startEdge(t)
  const backend = await httpServer(t, (req, res) => { setTimeout(() => { res.end(req.url) }, 5) })
  await startRegisteredTunnel(t, edge, 'app.tunnel.test', backend.url)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 })
  t.after(() => agent.destroy())
  const get = (path: string): Promise<string> => new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: edge.ports.http, path, agent, headers: { host: 'app.tunnel.test' } }, res => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => { resolve(`${res.statusCode ?? 0} ${body}`) })
    }).on('error', reject)
  })
  for (let round = 0; round < 5; round++) {
    const paths = Array.from({ length: 200 }, (_, i) => `/r/${round * 200 + i}`)
    assert.deepEqual(await Promise.all(paths.map(get)), paths.map(p => `200 ${p}`))
  }
  const s = (await edgeStatus(edge)).tunnels?.sessions[0]
  t.diagnostic(`1000 requests at concurrency 200 (64 client connections) over ${s?.streams_total} tunnel streams`)
  assert.ok((s?.streams_total ?? 1000) < 1000, 'pooled streams are reused across requests')
})

test('a token that expires during a live session ends it: GOAWAY, names unregistered, reconnect refused', async t => {
  const edge = await startEdge(t)
  const app = await httpServer(t, echo('app'))
  const from = edge.log.mark
  const tun = startTunnel(t, edge.ports.tunnel, mintToken(['app.tunnel.test'], { ttl: '3s' }), 'app.tunnel.test', app.url)
  await tun.log.wait(/granted http:app\.tunnel\.test/)
  await edge.log.wait(/"msg":"tunnel registered"/, 10_000, from)
  assert.equal((await request(edge.ports.http, 'app.tunnel.test')).status, 200)
  await edge.log.wait(/"msg":"tunnel unregistered"/, 8_000, from)
  assert.equal((await request(edge.ports.http, 'app.tunnel.test')).status, 503)
  await tun.log.wait(/EP_ERR_TOKEN_EXPIRED/, 40_000)
  assert.equal(edge.log.count(/"msg":"tunnel registered"/), 1, 'the expired token did not get back in')
  // An expired token is a final answer: the client exits 2 rather than redialling with it forever.
  if (tun.child.exitCode === null) await once(tun.child, 'exit')
  assert.equal(tun.child.exitCode, 2)
})

test('tunnel sessions are one member source: listed with source "tunnel"; a reload that takes `tunnel` off the pool removes them', async t => {
  const edge = await startEdge(t, { autoRoute: false })
  const app = await httpServer(t, echo('app'))
  const plain = await httpServer(t, echo('plain'))
  await startRegisteredTunnel(t, edge, 'app.tunnel.test', app.url)
  const members = async (): Promise<Array<{ url: string, source: string }>> =>
    JSON.parse((await request(edge.admin, '127.0.0.1', '/api/pools/app/backends')).body) as Array<{ url: string, source: string }>
  const before = await members()
  assert.equal(before.length, 1, JSON.stringify(before))
  assert.equal(before[0]?.source, 'tunnel')
  assert.match(before[0]?.url ?? '', /^tunnel:\/\/app\.tunnel\.test\//)
  assert.equal(JSON.parse((await request(edge.ports.http, 'app.tunnel.test')).body).id, 'app')

  // The pool now names a config backend instead of the tunnel: its tunnel member goes, the session stays.
  const { readFileSync, writeFileSync } = await import('node:fs')
  const original = readFileSync(edge.file, 'utf8')
  writeFileSync(edge.file, original.replace('tunnel = "app.tunnel.test"', `backends = ["${plain.url}"]`))
  let from = edge.log.mark
  edge.child.kill('SIGHUP')
  await edge.log.wait(/"msg":"config reloaded"/, 5000, from)
  assert.deepEqual((await members()).map(m => [m.url, m.source]), [[plain.url, 'config']])
  for (let i = 0; i < 3; i++) assert.equal(JSON.parse((await request(edge.ports.http, 'app.tunnel.test')).body).id, 'plain')

  // And back: the live session is a member again at once, without reconnecting.
  writeFileSync(edge.file, original)
  from = edge.log.mark
  edge.child.kill('SIGHUP')
  await edge.log.wait(/"msg":"config reloaded"/, 5000, from)
  assert.deepEqual((await members()).map(m => m.source), ['tunnel'])
  assert.equal(JSON.parse((await request(edge.ports.http, 'app.tunnel.test')).body).id, 'app')
  assert.equal(edge.log.count(/tunnel unregistered/), 0)
})

test('an auto_route name whose client left answers 503 "tunnel offline" naming it, and serves again when a client returns', async t => {
  const edge = await startEdge(t)
  const app = await httpServer(t, echo('auto'))
  const tun = await startRegisteredTunnel(t, edge, 'gone.tunnel.test', app.url)
  assert.equal((await request(edge.ports.http, 'gone.tunnel.test')).status, 200)
  const from = edge.log.mark
  tun.child.kill('SIGTERM')
  await edge.log.wait(/"msg":"tunnel unregistered"/, 10_000, from)
  const off = await request(edge.ports.http, 'gone.tunnel.test')
  assert.equal(off.status, 503, off.body)
  assert.match(off.body, /tunnel offline: no tunnel client is connected for gone\.tunnel\.test/)
  // A name nobody ever claimed is still no route.
  assert.equal((await request(edge.ports.http, 'never.tunnel.test')).status, 404)
  await startRegisteredTunnel(t, edge, 'gone.tunnel.test', app.url)
  const back = await request(edge.ports.http, 'gone.tunnel.test')
  assert.equal(back.status, 200, back.body)
  assert.equal(JSON.parse(back.body).id, 'auto')
})

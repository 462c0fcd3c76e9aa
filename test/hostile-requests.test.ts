// Hostile input, round two, on the real CLI: request lines with other HTTP versions, upgrades the backend refuses,
// bad Host fields, HTTP/1.0 with chunked framing and requests pipelined behind a refusal, on both HTTP/1.1 servers
// (and over TLS); idle upgraded connections; and the supervisor that restarts a serving process that dies.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import tls from 'node:tls'
import { freePort, parseRawResponse, spawnCli, waitUntil, type CliEdge } from './helpers.js'
import { makePki } from './tls-fixtures.js'

/**
 * A backend on raw TCP that records every byte it receives, so a test sees exactly what the edge forwarded.
 * Each complete request head gets `reply(head)`; "hold" keeps the connection open without answering.
 */
interface Recorder { readonly url: string, readonly streams: string[], all (): string }
async function recorder (t: TestContext, reply: (head: string) => string | 'hold'): Promise<Recorder> {
  const streams: string[] = []
  const sockets = new Set<net.Socket>()
  const server = net.createServer(sock => {
    sockets.add(sock)
    sock.on('close', () => sockets.delete(sock))
    sock.on('error', () => {})
    const i = streams.push('') - 1
    let pending = ''
    sock.on('data', d => {
      const text = d.toString('latin1')
      streams[i] += text
      pending += text
      let end: number
      while ((end = pending.indexOf('\r\n\r\n')) !== -1) {
        const head = pending.slice(0, end)
        pending = pending.slice(end + 4)
        const r = reply(head)
        if (r !== 'hold') sock.write(r)
      }
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.after(async () => { for (const s of sockets) s.destroy(); await new Promise(resolve => server.close(resolve)) })
  const port = (server.address() as net.AddressInfo).port
  return { url: `http://127.0.0.1:${port}`, streams, all: () => streams.join('') }
}

const OK = 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok'

/** Sends bytes on a fresh connection; resolves with what came back once the edge closes (or after waitMs). */
function exchange (port: number, bytes: string, opts: { waitMs?: number, tls?: { ca: string, servername: string } } = {}): Promise<{ text: string, closed: boolean }> {
  return new Promise((resolve, reject) => {
    const sock: net.Socket = opts.tls === undefined
      ? net.connect(port, '127.0.0.1')
      : tls.connect({ port, host: '127.0.0.1', ca: opts.tls.ca, servername: opts.tls.servername, ALPNProtocols: ['http/1.1'] })
    let text = ''
    const timer = setTimeout(() => { sock.destroy(); resolve({ text, closed: false }) }, opts.waitMs ?? 2000)
    sock.on('data', d => { text += d.toString('latin1') })
    sock.on('error', err => { if (text === '') { clearTimeout(timer); reject(err) } })
    sock.on('close', () => { clearTimeout(timer); resolve({ text, closed: true }) })
    sock.once(opts.tls === undefined ? 'connect' : 'secureConnect', () => { sock.write(bytes) })
  })
}

async function pidOf (cli: CliEdge): Promise<number> {
  const r = await fetch(`http://127.0.0.1:${cli.adminPort}/healthz`)
  return ((await r.json()) as { pid: number }).pid
}

async function metric (cli: CliEdge, name: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${cli.adminPort}/metrics`)).text()
  const line = text.split('\n').find(l => l.startsWith(`${name} `) || l.startsWith(`${name}{`))
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1))
}

const statusOf = (text: string): number => Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)

for (const server of ['edge', 'node'] as const) {
  test(`${server}: a request line with another HTTP version is answered 505 (plain, TLS, Upgrade) and the edge lives`, async t => {
    const rec = await recorder(t, () => OK)
    const pki = await makePki(t)
    const leaf = await pki.issue(['secure.test'])
    const tlsPort = await freePort()
    const cli = await spawnCli(t, `
[server]
http1_server = "${server}"
[[listeners]]
name = "secure"
listen = "127.0.0.1:${tlsPort}"
protocol = "https"
certificates = [{ cert = "${leaf.cert}", key = "${leaf.key}" }]
alpn = ["http/1.1"]
[[routes]]
pool = "p"
[pools.p]
backends = ["${rec.url}"]
`, { listeningCount: 2 })
    const pid = await pidOf(cli)
    const lines = ['GET / HTTP/2.0', 'GET / HTTP/0.9', 'GET / HTTP/1.2', 'GET / HTTP/3.0', 'GET / HTTP/9.9']
    const upgrade = 'Connection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'
    for (const line of lines) {
      for (const extra of ['', upgrade]) {
        for (const over of ['plain', 'tls'] as const) {
          const bytes = `${line}\r\nHost: v.test\r\n${extra}\r\n`
          const r = await exchange(over === 'plain' ? cli.port : tlsPort, bytes, over === 'tls' ? { tls: { ca: pki.ca.cert, servername: 'secure.test' } } : {})
          const what = `${JSON.stringify(bytes)} over ${over}`
          assert.ok([505, 400].includes(statusOf(r.text)), `${what}: got ${JSON.stringify(r.text.slice(0, 80))}`)
          if (line.includes('2.0') || line.includes('0.9')) assert.equal(statusOf(r.text), 505, what)
          assert.ok(r.closed, `${what}: the connection closes`)
        }
      }
    }
    assert.equal(rec.all(), '', 'nothing reached the backend')
    assert.equal(await pidOf(cli), pid, 'the same process still serves')
    const ok = await exchange(cli.port, 'GET / HTTP/1.1\r\nHost: v.test\r\nConnection: close\r\n\r\n')
    assert.equal(statusOf(ok.text), 200)
  })

  test(`${server}: an upgrade the backend refuses is not a tunnel; the edge's own routes answer upgrades`, async t => {
    // The backend refuses every upgrade with a 403 and a body, and keeps the connection open (keep-alive).
    const rec = await recorder(t, () => 'HTTP/1.1 403 Forbidden\r\ncontent-length: 6\r\ncontent-type: text/plain\r\n\r\nno ws\n')
    const cli = await spawnCli(t, `
[server]
http1_server = "${server}"
[[routes]]
name = "blocked"
match.path_prefix = "/admin"
respond = { status = 403, body = "blocked by the edge\\n" }
[[routes]]
pool = "p"
[pools.p]
backends = ["${rec.url}"]
`)
    const hs = (path: string): string => `GET ${path} HTTP/1.1\r\nHost: u.test\r\nConnection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`
    // Bytes after the handshake: a request the edge's route refuses, smuggled as "the new protocol".
    const smuggled = 'GET /admin/secret HTTP/1.1\r\nHost: u.test\r\nX-Spoofed: yes\r\n\r\n'
    const r = await exchange(cli.port, hs('/chat') + smuggled)
    const reply = parseRawResponse(r.text)
    assert.equal(reply.status, 403)
    assert.equal(reply.body, 'no ws\n', 'the backend\'s refusal reaches the client')
    assert.equal(reply.headers.connection, 'close')
    assert.ok(r.closed, 'the connection closes after the refusal')
    await new Promise(resolve => setTimeout(resolve, 100))
    assert.equal(rec.streams.length, 1)
    assert.ok(!rec.all().includes('/admin/secret'), `the pipelined bytes never reached the backend: ${JSON.stringify(rec.all())}`)
    assert.ok(!rec.all().includes('X-Spoofed'))
    // An upgrade request on a route the edge answers gets that answer, not a splice.
    const blocked = await exchange(cli.port, hs('/admin/ws'))
    assert.equal(statusOf(blocked.text), 403)
    assert.match(blocked.text, /blocked by the edge/)
    assert.ok(!rec.all().includes('/admin/ws'))
  })

  test(`${server}: Host must be one valid authority, and HTTP/1.1 must send it`, async t => {
    const rec = await recorder(t, () => OK)
    const cli = await spawnCli(t, `
[server]
http1_server = "${server}"
[[routes]]
pool = "p"
[pools.p]
backends = ["${rec.url}"]
`)
    const bad = [
      'GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a.test\r\nhost: a.test\r\n\r\n',
      'GET / HTTP/1.1\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a.test b.test\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: user@a.test\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a.test/path\r\n\r\n',
      'GET http://user@a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n',
    ]
    for (const bytes of bad) {
      const r = await exchange(cli.port, `${bytes}GET /after HTTP/1.1\r\nHost: a.test\r\n\r\n`)
      assert.equal(statusOf(r.text), 400, `${JSON.stringify(bytes)}: ${r.text.slice(0, 120)}`)
      assert.ok(r.closed, `${JSON.stringify(bytes)}: closed`)
    }
    assert.equal(rec.all(), '', 'no bad Host reached the backend, nor anything pipelined after it')
    // HTTP/1.0 may omit Host; an IPv6 literal with a port is an authority.
    const old = await exchange(cli.port, 'GET / HTTP/1.0\r\n\r\n')
    assert.equal(statusOf(old.text), 200)
    const v6 = await exchange(cli.port, 'GET / HTTP/1.1\r\nHost: [::1]:8080\r\nConnection: close\r\n\r\n')
    assert.equal(statusOf(v6.text), 200)
  })

  test(`${server}: nothing pipelined after a 400 is read; HTTP/1.0 with chunked framing is refused`, async t => {
    const rec = await recorder(t, () => OK)
    const cli = await spawnCli(t, `
[server]
http1_server = "${server}"
[[routes]]
pool = "p"
[pools.p]
backends = ["${rec.url}"]
`)
    const next = 'GET /smuggled HTTP/1.1\r\nHost: s.test\r\n\r\n'
    const refused = [
      'POST / HTTP/1.1\r\nHost: s.test\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n',
      'POST / HTTP/1.1\r\nHost: s.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n',
      'GET * HTTP/1.1\r\nHost: s.test\r\n\r\n',
      'POST / HTTP/1.0\r\nHost: s.test\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n0\r\n\r\n',
    ]
    for (const bytes of refused) {
      const r = await exchange(cli.port, bytes + next)
      assert.equal(statusOf(r.text), 400, `${JSON.stringify(bytes)}: ${r.text.slice(0, 120)}`)
      assert.equal(r.text.split('HTTP/1.1 ').length - 1, 1, `${JSON.stringify(bytes)}: one answer only`)
      assert.ok(r.closed)
    }
    await new Promise(resolve => setTimeout(resolve, 100))
    assert.ok(!rec.all().includes('/smuggled'), `nothing after a 400 was forwarded: ${JSON.stringify(rec.all())}`)
  })
}

test('tunnel_idle_timeout closes upgraded connections with no bytes either way; active ones stay', async t => {
  // A backend that switches protocols and then echoes (or stays silent).
  const sockets = new Set<net.Socket>()
  const backend = net.createServer(sock => {
    sockets.add(sock)
    sock.on('error', () => {})
    let switched = false
    let buf = ''
    sock.on('data', d => {
      if (switched) { sock.write(d); return }
      buf += d.toString('latin1')
      const end = buf.indexOf('\r\n\r\n')
      if (end === -1) return
      switched = true
      sock.write('HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n')
      const rest = buf.slice(end + 4)
      if (rest !== '') sock.write(rest)
    })
  })
  await new Promise<void>(resolve => backend.listen(0, '127.0.0.1', resolve))
  t.after(() => { for (const s of sockets) s.destroy(); backend.close() })
  const cli = await spawnCli(t, `
[server]
tunnel_idle_timeout = "300ms"
[[routes]]
pool = "p"
[pools.p]
backends = ["http://127.0.0.1:${(backend.address() as net.AddressInfo).port}"]
`)
  const open = async (): Promise<{ sock: net.Socket, got: () => string, closedAt: Promise<number> }> => {
    const sock = net.connect(cli.port, '127.0.0.1')
    let got = ''
    sock.on('data', d => { got += d.toString('latin1') })
    const closedAt = new Promise<number>(resolve => { sock.on('close', () => { resolve(performance.now()) }) })
    await new Promise(resolve => sock.once('connect', resolve))
    sock.write('GET /x HTTP/1.1\r\nHost: e.test\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n')
    await waitUntil(() => got.includes('101 Switching'), 3000, 'the 101')
    return { sock, got: () => got, closedAt }
  }
  const idle = await open()
  const idleStart = performance.now()
  const active = await open()
  t.after(() => { idle.sock.destroy(); active.sock.destroy() })
  let activeClosed = false
  void active.closedAt.then(() => { activeClosed = true })
  for (let i = 0; i < 10; i++) {
    active.sock.write(`ping${i};`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  const idleClosed = await Promise.race([idle.closedAt, new Promise<number>(resolve => setTimeout(resolve, 3000, -1))])
  assert.ok(idleClosed > 0, 'the idle upgraded connection was closed')
  assert.ok(idleClosed - idleStart >= 250, `not before the timeout (${Math.round(idleClosed - idleStart)} ms)`)
  assert.equal(activeClosed, false, 'the active one stays open past the timeout')
  assert.match(active.got(), /ping9;/, 'and its bytes were echoed through the splice')
})

test('workers = 1: a serving process that dies is restarted within a second and counted', async t => {
  const rec = await recorder(t, () => OK)
  const cli = await spawnCli(t, `
[[routes]]
pool = "p"
[pools.p]
backends = ["${rec.url}"]
`)
  const first = await pidOf(cli)
  assert.notEqual(first, cli.child.pid, 'a supervisor runs the serving process as its child')
  assert.equal(await metric(cli, 'edge_process_restarts_total'), 0)
  const killedAt = performance.now()
  process.kill(first, 'SIGKILL')
  let second = 0
  await waitUntil(async () => {
    try { second = await pidOf(cli) } catch { return false }
    return second !== first
  }, 5000, 'a new serving process')
  const tookMs = performance.now() - killedAt
  const r = await exchange(cli.port, 'GET / HTTP/1.1\r\nHost: r.test\r\nConnection: close\r\n\r\n')
  assert.equal(statusOf(r.text), 200, 'the new process serves')
  assert.equal(await metric(cli, 'edge_process_restarts_total'), 1)
  const died = await cli.waitForEvent(e => e.msg === 'the serving process died; starting a new one')
  assert.equal(died.child, first)
  t.diagnostic(`serving again ${Math.round(tookMs)} ms after the kill`)
  // Node's start-up alone is a few hundred ms here; a second is the promise, slow CI gets some slack.
  assert.ok(tookMs < 3000, `restarted in ${Math.round(tookMs)} ms`)
  // SIGTERM still drains and exits 0 through the supervisor, and takes the child with it.
  cli.child.kill('SIGTERM')
  const exit = await cli.exited
  assert.equal(exit.code, 0)
  await waitUntil(() => { try { process.kill(second, 0); return false } catch { return true } }, 5000, 'the child to exit')
})

test('workers = 2: a worker that dies is replaced and counted in edge_process_restarts_total', async t => {
  const rec = await recorder(t, () => OK)
  const cli = await spawnCli(t, `
[server]
workers = 2
[[routes]]
pool = "p"
[pools.p]
backends = ["${rec.url}"]
`, { listeningCount: 2 })
  const workers = cli.events.filter(e => e.msg === 'listening').map(e => Number(e.pid))
  assert.equal(await metric(cli, 'edge_process_restarts_total'), 0)
  process.kill(workers[0] as number, 'SIGKILL')
  await waitUntil(async () => (await metric(cli, 'edge_process_restarts_total').catch(() => undefined)) === 1, 15_000, 'the restart counted')
  await waitUntil(() => cli.events.filter(e => e.msg === 'listening').length >= 3, 15_000, 'a new worker listening')
})

test('CONNECT is answered 405 on both HTTP/1.1 servers, never tunnelled', async t => {
  const rec = await recorder(t, () => OK)
  for (const server of ['edge', 'node']) {
    const cli = await spawnCli(t, `
[server]
http1_server = "${server}"
[[routes]]
pool = "p"
[pools.p]
backends = ["${rec.url}"]
`)
    const r = await exchange(cli.port, 'CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\nSSH-2.0-x\r\n')
    assert.equal(statusOf(r.text), 405, `${server}: ${JSON.stringify(r.text)}`)
    assert.ok(r.closed)
  }
  assert.equal(rec.all(), '')
})

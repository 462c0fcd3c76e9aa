// Backend client behaviour against a real edge: reconnects, several clients per name, abrupt death, drain.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { TunnelServer } from '../packer/server.js'
import type { TunnelError } from '../packer/errors.js'
import type { Session } from '../packer/session.js'
import { SECRET, startEdge, startClient, registered, tcpServer, token, CLIENT, sleep } from './packer-util.js'
import { refusedUrl } from './helpers.js'

async function echo (s: import('node:stream').Duplex, text: string): Promise<string> {
  s.end(text)
  const chunks: Buffer[] = []
  for await (const c of s) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString()
}

test('the client reconnects after the edge restarts, and can hold several edges at once', async t => {
  const target = await tcpServer(t, sock => { sock.pipe(sock) })
  const { edge, url } = await startEdge(t)
  const { edge: edge2, url: url2 } = await startEdge(t)
  const client = startClient(t, [url, url2], [{ service: 'http', name: 'app.tunnel.test', to: `http://127.0.0.1:${target.port}` }], { backoff: { minMs: 30, maxMs: 120 } })
  await registered(edge, 'app.tunnel.test')
  await registered(edge2, 'app.tunnel.test')

  const port = edge.address().port
  const gone = once(client, 'disconnect')
  await edge.close()
  assert.equal((await gone)[0], url)
  assert.equal(edge2.lookup('app.tunnel.test').length, 1) // the other edge's session is unaffected
  await sleep(300) // a few failed dials while nothing listens: the client must keep trying
  const again = new TunnelServer({ secret: SECRET, allow: ['*.tunnel.test'], port })
  await again.start()
  t.after(() => again.close())
  const session = await registered(again, 'app.tunnel.test')
  assert.equal(await echo(again.openStream(session, { ...CLIENT, service: 'http', servername: 'app.tunnel.test' }), 'back'), 'back')
})

test('two clients claiming one name are both registered; killing one unregisters it at once', async t => {
  // The edge's heartbeat is slow on purpose: the unregister must come from the socket closing, not a timeout.
  const { edge, url } = await startEdge(t, { session: { pingIntervalMs: 60_000, pingTimeoutMs: 60_000 } })
  const target = await tcpServer(t, sock => { sock.pipe(sock) })
  const routes = [{ service: 'http' as const, name: 'app.tunnel.test', to: `http://127.0.0.1:${target.port}` }]
  startClient(t, url, routes)
  const first = await registered(edge, 'app.tunnel.test')

  // The second client is its own process, so it can die for real (SIGKILL).
  const clientJs = fileURLToPath(new URL('../packer/client.js', import.meta.url))
  const script = `const { TunnelClient } = await import(${JSON.stringify(clientJs)});
    const c = new TunnelClient(JSON.parse(process.env.OPTS)); c.on('session', () => console.log('ready')); c.start();`
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, OPTS: JSON.stringify({ edges: [url], token: token(['app.tunnel.test']), routes }) },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  t.after(() => child.kill('SIGKILL'))
  await once(child.stdout, 'data')
  for (let i = 0; i < 50 && edge.lookup('app.tunnel.test').length < 2; i++) await sleep(10)
  const both = edge.lookup('app.tunnel.test')
  assert.equal(both.length, 2)
  const second = both.find(s => s !== first)!

  // A stream through the child, left open when it dies.
  const s = edge.openStream(second, { ...CLIENT, service: 'http', servername: 'app.tunnel.test' })
  s.write('hello')
  await once(s, 'data')
  const streamError = once(s, 'error')
  const unregistered = once(edge, 'unregister')
  const killedAt = Date.now()
  child.kill('SIGKILL')
  const [name, session] = await unregistered as [string, Session]
  assert.equal(name, 'app.tunnel.test')
  assert.equal(session, second)
  assert.ok(Date.now() - killedAt < 2000, 'unregistered by the socket closing, not by a heartbeat')
  const [err] = await streamError as [TunnelError]
  assert.equal(err.code, 'EP_ERR_TUNNEL_CLOSED')
  assert.deepEqual(edge.lookup('app.tunnel.test'), [first])
  assert.equal(await echo(edge.openStream(first, { ...CLIENT, service: 'http', servername: 'app.tunnel.test' }), 'still here'), 'still here')
})

test('GOAWAY drains: open streams finish, new ones are refused, then the session closes', async t => {
  const { edge, url } = await startEdge(t)
  const target = await tcpServer(t, sock => { sock.pipe(sock) })
  startClient(t, url, [{ service: 'http', name: 'app.tunnel.test', to: `http://127.0.0.1:${target.port}` }], { backoff: { minMs: 5000, maxMs: 5000 } })
  const session = await registered(edge, 'app.tunnel.test')
  const s = edge.openStream(session, { ...CLIENT, service: 'http', servername: 'app.tunnel.test' })
  s.write('before ')
  await once(s, 'data')
  edge.drain()
  assert.equal(edge.lookup('app.tunnel.test').length, 0) // no new streams go to a draining session
  assert.throws(() => edge.openStream(session, { ...CLIENT, service: 'http', servername: 'app.tunnel.test' }), { code: 'EP_ERR_TUNNEL_GOAWAY' })
  const closed = once(session, 'close')
  assert.equal(await echo(s, 'after'), 'after') // the open stream still completes both ways
  const [err] = await closed
  assert.equal(err, undefined) // a clean close, not an error
})

test('a stream for a name without a local target is reset with REFUSED; an unreachable target with CONNECT_FAILED', async t => {
  const { edge, url } = await startEdge(t)
  startClient(t, url, [{ service: 'http', name: 'app.tunnel.test', to: await refusedUrl() }])
  const session = await registered(edge, 'app.tunnel.test')
  const a = edge.openStream(session, { ...CLIENT, service: 'tls', servername: 'app.tunnel.test' })
  const [ea] = await once(a, 'error') as [TunnelError]
  assert.equal(ea.code, 'EP_ERR_TUNNEL_STREAM_RESET')
  assert.equal(ea.resetCode, 4)
  const b = edge.openStream(session, { ...CLIENT, service: 'http', servername: 'app.tunnel.test' })
  const [eb] = await once(b, 'error') as [TunnelError]
  assert.equal(eb.resetCode, 6)
  assert.match(eb.message, /ECONNREFUSED/)
  assert.equal(session.closed, false)
})

test('tcp/tls routes can prefix the local connection with a PROXY header carrying the original client', async t => {
  const { edge, url } = await startEdge(t)
  const heads: Buffer[] = []
  const target = await tcpServer(t, sock => { sock.once('data', c => { heads.push(c as Buffer); sock.end() }) })
  startClient(t, url, [
    { service: 'tls', name: 'v1.tunnel.test', to: `tcp://127.0.0.1:${target.port}`, proxyProtocol: 1 },
    { service: 'tcp', name: 'v2.tunnel.test', to: `tcp://127.0.0.1:${target.port}`, proxyProtocol: 2 },
  ])
  const session = await registered(edge, 'v1.tunnel.test')
  for (const [service, servername] of [['tls', 'v1.tunnel.test'], ['tcp', 'v2.tunnel.test']] as const) {
    const s = edge.openStream(session, { ...CLIENT, service, servername })
    s.end()
    s.resume()
    await once(s, 'end')
  }
  assert.equal(heads[0]!.toString(), `PROXY TCP4 203.0.113.9 127.0.0.1 40000 ${target.port}\r\n`)
  const v2 = heads[1]!
  assert.equal(v2.subarray(0, 12).toString('hex'), '0d0a0d0a000d0a515549540a')
  assert.equal(v2[13], 0x11)
  assert.equal([...v2.subarray(16, 20)].join('.'), '203.0.113.9')
  assert.equal(v2.readUInt16BE(24), 40000)
})

test('GOAWAY from the edge: the client dials a new session at once (no backoff) while the old one finishes its streams', async t => {
  const target = await tcpServer(t, sock => { sock.pipe(sock) })
  const { edge, url } = await startEdge(t)
  // A backoff of 5 s: a redial that waited for it would miss the bound below by far.
  const client = startClient(t, url, [{ service: 'http', name: 'app.tunnel.test', to: `http://127.0.0.1:${target.port}` }], { backoff: { minMs: 5000, maxMs: 5000 } })
  const old = await registered(edge, 'app.tunnel.test')
  const inFlight = edge.openStream(old, { ...CLIENT, service: 'http', servername: 'app.tunnel.test' })
  inFlight.write('before ')
  const said = once(client, 'goaway')
  const started = Date.now()
  const fresh = (async () => {
    for (;;) {
      const [n, s] = await once(edge, 'register') as [string, Session]
      if (n === 'app.tunnel.test' && s !== old) return s
    }
  })()
  edge.drain() // what an edge handing over to its successor (or shutting down) sends
  const next = await fresh
  const took = Date.now() - started
  assert.ok(took < 1000, `the new session registered ${took} ms after GOAWAY`)
  assert.equal((await said)[0], url)
  // The old session's stream still finishes, and new streams go to the new session.
  assert.equal(await echo(inFlight, 'after'), 'before after')
  assert.equal(await echo(edge.openStream(next, { ...CLIENT, service: 'http', servername: 'app.tunnel.test' }), 'new'), 'new')
  assert.deepEqual(client.sessions().length, 1)
})

test('an edge that sends GOAWAY on every session gets backoff after the first, not a reconnect loop', async t => {
  const target = await tcpServer(t, sock => { sock.pipe(sock) })
  const { edge, url } = await startEdge(t)
  let sessions = 0
  edge.on('register', (_n: string, s: Session) => { sessions++; s.goaway() })
  startClient(t, url, [{ service: 'http', name: 'app.tunnel.test', to: `http://127.0.0.1:${target.port}` }], { backoff: { minMs: 400, maxMs: 400 } })
  await sleep(1500)
  // The first GOAWAY redials at once; every later one waits its 400 ms backoff: a handful, not hundreds.
  assert.ok(sessions >= 2 && sessions <= 5, `${sessions} sessions in 1.5 s`)
})

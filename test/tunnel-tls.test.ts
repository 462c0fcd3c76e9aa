// TLS passthrough over tunnels: a backend behind NAT claims tls:NAME and the edge splices raw TLS connections for
// that SNI to it over the tunnel; the client verifies the backend's own certificate end to end. Both through a
// route (match.sni -> pool with tunnel = NAME) and through auto_route (a claimed SNI with no route).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import tls from 'node:tls'
import { once } from 'node:events'
import { freePort, mintToken, startEdge, startTunnel } from './tunnel-edge-util.js'
import { makePki } from './tls-fixtures.js'

async function tlsBackend (t: import('node:test').TestContext, id: string, cert: string, key: string): Promise<number> {
  const server = tls.createServer({ cert, key }, sock => {
    sock.on('data', (d: Buffer) => { sock.write(`${id}:${d.toString()}`) })
    sock.on('error', () => {})
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => { server.close() })
  return (server.address() as { port: number }).port
}

function ask (port: number, servername: string, ca: string, text: string): Promise<{ reply: string, authorized: boolean, names: string }> {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host: '127.0.0.1', port, servername, ca }, () => {
      sock.write(text)
      sock.once('data', (d: Buffer) => {
        resolve({ reply: d.toString(), authorized: sock.authorized, names: sock.getPeerCertificate().subjectaltname ?? '' })
        sock.end()
      })
    })
    sock.once('error', reject)
    sock.setTimeout(5000, () => { sock.destroy(new Error('timeout')) })
  })
}

test('tls passthrough to tunnel members: a match.sni route and auto_route, the backend\'s own certificate', async t => {
  const pki = await makePki(t)
  const db = await pki.issue(['db.tunnel.test'])
  const other = await pki.issue(['auto.tunnel.test'])
  const dbPort = await tlsBackend(t, 'db', db.pem.cert, db.pem.key)
  const autoPort = await tlsBackend(t, 'auto', other.pem.cert, other.pem.key)
  const pt = await freePort()
  const edge = await startEdge(t, {
    extra: `
[[listeners]]
name = "pt"
listen = "127.0.0.1:${pt}"
protocol = "tls"

[[routes]]
name = "db"
listener = "pt"
match.sni = "db.tunnel.test"
pool = "db"

[pools.db]
tunnel = "db.tunnel.test"
`,
  })
  const from = edge.log.mark
  const a = startTunnel(t, edge.ports.tunnel, mintToken(['db.tunnel.test', 'auto.tunnel.test']), 'tls:db.tunnel.test', `tcp://127.0.0.1:${dbPort}`,
    ['--name', 'tls:auto.tunnel.test', '--to', `tcp://127.0.0.1:${autoPort}`])
  await a.log.wait(/granted tls:db\.tunnel\.test, tls:auto\.tunnel\.test/)
  await edge.log.wait(/"name":"tls:auto\.tunnel\.test".*"msg":"tunnel registered"/, 10_000, from)

  const r1 = await ask(pt, 'db.tunnel.test', pki.ca.cert, 'hello')
  assert.equal(r1.reply, 'db:hello')
  assert.equal(r1.authorized, true, 'the client trusts the backend certificate it got through the tunnel')
  assert.match(r1.names, /DNS:db\.tunnel\.test/)
  const r2 = await ask(pt, 'auto.tunnel.test', pki.ca.cert, 'hi')
  assert.equal(r2.reply, 'auto:hi')
  assert.match(r2.names, /DNS:auto\.tunnel\.test/)

  // Tunnel sessions and streams are in /metrics.
  const metrics = await (await fetch(`http://127.0.0.1:${edge.admin}/metrics`)).text()
  assert.match(metrics, /^edge_tunnel_sessions\{client="[^"]*"\} 1$/m)
  const opened = Number(/^edge_tunnel_streams_opened_total\{client="[^"]*"\} (\d+)$/m.exec(metrics)?.[1])
  assert.ok(opened >= 2, `streams opened: ${opened}`)

  // The client goes away: the name has no member, so the connection is closed instead of misrouted.
  a.child.kill('SIGKILL')
  await edge.log.wait(/"msg":"tunnel unregistered"/, 10_000, from)
  await assert.rejects(ask(pt, 'db.tunnel.test', pki.ca.cert, 'x'))
})

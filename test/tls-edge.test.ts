// https listeners end to end: SNI picks the certificate (three names and a wildcard), no SNI gets the default,
// rotated files reach new handshakes while an open connection keeps working, requests reach the backend with the
// forwarded TLS facts, mTLS, WebSockets over TLS, status and metrics, and curl as a real client.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import https from 'node:https'
import tls from 'node:tls'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { WebSocket, WebSocketServer, type ClientOptions } from 'ws'
import { issueCertificate, writePair, fileStemFor } from '../proxy/tls/certs.js'
import { edgeStatus } from '../proxy/ops/status.js'
import { handshake, makePki } from './tls-fixtures.js'
import { echoBackend, silentToml, startEdge } from './tls-edge-util.js'

const run = promisify(execFile)

function get (port: number, servername: string, ca: string, path = '/', extra: https.RequestOptions = {}): Promise<{ status: number, body: string, socket: tls.TLSSocket }> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, path, servername, ca, headers: { host: servername }, agent: false, ...extra }, res => {
      let body = ''
      res.on('data', d => { body += String(d) })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body, socket: res.socket as tls.TLSSocket }) })
    })
    req.on('error', reject)
    req.end()
  })
}

async function fixture (t: Parameters<typeof startEdge>[0], extraListener = '') {
  const pki = await makePki(t)
  const a = await pki.issue(['a.example.com'])
  const b = await pki.issue(['b.example.com'])
  const c = await pki.issue(['c.example.com'])
  const w = await pki.issue(['*.w.example.com'])
  const backend = await echoBackend(t)
  const toml = `${silentToml}
[[listeners]]
name = "websecure"
listen = "127.0.0.1:0"
protocol = "https"
certificates = [
  { cert = "a.example.com.pem", key = "a.example.com.key" },
  { cert = "b.example.com.pem", key = "b.example.com.key" },
  { cert = "c.example.com.pem", key = "c.example.com.key" },
  { cert = "_wildcard.w.example.com.pem", key = "_wildcard.w.example.com.key" },
]
default_certificate = "b.example.com.pem"
alpn = ["h2", "http/1.1"]
min_version = "TLSv1.2"
${extraListener}
[[routes]]
name = "c-only"
match.sni = "c.example.com"
respond = { status = 200, body = "sni route\\n" }

[[routes]]
pool = "app"

[pools.app]
backends = ["http://127.0.0.1:${backend.port}"]
`
  const e = await startEdge(t, pki.dir, toml)
  return { pki, a, b, c, w, e, port: e.port('websecure') }
}

test('SNI picks the certificate for three names and a wildcard; no SNI and unknown names get the default', async t => {
  const { pki, port } = await fixture(t)
  for (const [sni, want] of [['a.example.com', 'a.example.com'], ['b.example.com', 'b.example.com'], ['c.example.com', 'c.example.com'], ['x.w.example.com', '*.w.example.com'], [undefined, 'b.example.com'], ['nope.example.org', 'b.example.com']] as const) {
    const h = await handshake(port, sni, pki.ca.cert)
    assert.deepEqual(h.names, [want], `SNI ${sni ?? '(none)'}`)
    assert.equal(h.authorized, true)
    h.socket.destroy()
  }
})

test('https requests reach the backend with Host, X-Forwarded-Proto https and the SNI name; match.sni routes', async t => {
  const { pki, port } = await fixture(t)
  const r = await get(port, 'a.example.com', pki.ca.cert, '/hello', { headers: { host: 'a.example.com', 'x-forwarded-server-name': 'forged' } })
  assert.equal(r.status, 200)
  const seen = JSON.parse(r.body) as { url: string, headers: Record<string, string> }
  assert.equal(seen.url, '/hello')
  assert.equal(seen.headers.host, 'a.example.com')
  assert.equal(seen.headers['x-forwarded-proto'], 'https')
  assert.equal(seen.headers['x-forwarded-server-name'], 'a.example.com')
  assert.match(seen.headers.forwarded ?? '', /proto=https/)
  const c = await get(port, 'c.example.com', pki.ca.cert)
  assert.equal(c.body, 'sni route\n')
})

test('a rotated certificate reaches new handshakes while an open connection keeps working; reload keeps it too', async t => {
  const { pki, a, port, e } = await fixture(t)
  const before = await handshake(port, 'a.example.com', pki.ca.cert)
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 })
  t.after(() => { agent.destroy() })
  const first = await get(port, 'a.example.com', pki.ca.cert, '/1', { agent })
  assert.equal(first.status, 200)
  const openSocket = first.socket
  const renewed = await issueCertificate(pki.ca, { names: ['a.example.com'], days: 30 })
  await writePair(pki.dir, fileStemFor('a.example.com'), renewed)
  const deadline = Date.now() + 8000
  let now = before.fingerprint
  while (now === before.fingerprint && Date.now() < deadline) {
    await new Promise(resolve => setTimeout(resolve, 100))
    const h = await handshake(port, 'a.example.com', pki.ca.cert)
    now = h.fingerprint
    h.socket.destroy()
  }
  assert.notEqual(now, before.fingerprint, 'new handshakes get the renewed certificate')
  assert.equal(a.cert.endsWith('a.example.com.pem'), true)
  // The connection opened before the rotation still carries requests, on the same socket.
  const second = await get(port, 'a.example.com', pki.ca.cert, '/2', { agent })
  assert.equal(second.status, 200)
  assert.equal(second.socket, openSocket)
  // A config reload re-reads the certificates on the same store: the open connection survives it as well.
  await e.edge.reload(e.edge.config)
  const third = await get(port, 'a.example.com', pki.ca.cert, '/3', { agent })
  assert.equal(third.status, 200)
  assert.equal(third.socket, openSocket)
  before.socket.destroy()
})

test('status lists the certificates, metrics have the expiry gauge, and the log warns of one expiring soon', async t => {
  const pki = await makePki(t)
  await pki.issue(['soon.example.com'], { days: 5 })
  const backend = await echoBackend(t)
  const e = await startEdge(t, pki.dir, `${silentToml}
[[listeners]]
name = "s"
listen = "127.0.0.1:0"
protocol = "https"
certificates = "."
[[routes]]
pool = "app"
[pools.app]
backends = ["http://127.0.0.1:${backend.port}"]
`)
  const st = await edgeStatus(e.edge)
  assert.equal(st.certificates.length, 1)
  assert.deepEqual(st.certificates[0]?.names, ['soon.example.com'])
  assert.ok((st.certificates[0]?.days_left ?? 99) <= 5)
  const metrics = await e.edge.metrics.text()
  const m = /edge_certificate_expiry_seconds\{listener="s",name="soon.example.com"\} (\d+)/.exec(metrics)
  assert.ok(m !== null, metrics)
  assert.ok(Number(m[1]) > 4 * 86400 && Number(m[1]) <= 5 * 86400)
  assert.ok(e.logs.some(l => l.msg === 'certificate expires soon' && l.level === 40), JSON.stringify(e.logs))
})

test('client_ca requires a client certificate (mTLS)', async t => {
  const pki = await makePki(t)
  await pki.issue(['m.example.com'])
  const client = await issueCertificate(pki.ca, { names: ['client-1'], clientAuth: true })
  const { writeFile } = await import('node:fs/promises')
  await writeFile(`${pki.dir}/ca.pem`, pki.ca.cert)
  const backend = await echoBackend(t)
  const e = await startEdge(t, pki.dir, `${silentToml}
[[listeners]]
name = "m"
listen = "127.0.0.1:0"
protocol = "https"
certificates = [{ cert = "m.example.com.pem", key = "m.example.com.key" }]
client_ca = "ca.pem"
[[routes]]
pool = "app"
[pools.app]
backends = ["http://127.0.0.1:${backend.port}"]
`)
  const port = e.port('m')
  await assert.rejects(get(port, 'm.example.com', pki.ca.cert))
  const ok = await get(port, 'm.example.com', pki.ca.cert, '/', { cert: client.cert, key: client.key })
  assert.equal(ok.status, 200)
})

test('WebSocket upgrades work over https (HTTP/1.1)', async t => {
  const pki = await makePki(t)
  await pki.issue(['ws.example.com'])
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' })
  await new Promise(resolve => wss.once('listening', resolve))
  wss.on('connection', (ws, req) => { ws.send(`proto=${String(req.headers['x-forwarded-proto'])}`); ws.on('message', d => { ws.send(d) }) })
  t.after(() => { for (const c of wss.clients) c.terminate(); wss.close() })
  const e = await startEdge(t, pki.dir, `${silentToml}
[[listeners]]
name = "w"
listen = "127.0.0.1:0"
protocol = "https"
certificates = [{ cert = "ws.example.com.pem", key = "ws.example.com.key" }]
[[routes]]
pool = "ws"
[pools.ws]
backends = ["http://127.0.0.1:${(wss.address() as { port: number }).port}"]
`)
  const ws = new WebSocket(`wss://127.0.0.1:${e.port('w')}/`, { ca: pki.ca.cert, headers: { host: 'ws.example.com' }, ...{ servername: 'ws.example.com' } } as ClientOptions)
  const got: string[] = []
  await new Promise<void>((resolve, reject) => {
    ws.on('message', d => { got.push(String(d)); if (got.length === 1) ws.send('ping'); else { ws.close(); resolve() } })
    ws.on('error', reject)
  })
  assert.deepEqual(got, ['proto=https', 'ping'])
})

test('curl (real client) over https, HTTP/1.1 and HTTP/2', async t => {
  try { await run('curl', ['--version']) } catch { t.skip('curl not installed'); return }
  const { pki, port } = await fixture(t)
  const { writeFile } = await import('node:fs/promises')
  const caFile = `${pki.dir}/ca.pem`
  await writeFile(caFile, pki.ca.cert)
  for (const [flag, version] of [['--http1.1', '1.1'], ['--http2', '2']] as const) {
    const { stdout } = await run('curl', ['-sS', flag, '--resolve', `x.w.example.com:${port}:127.0.0.1`, '--cacert', caFile, '-w', '\n%{http_version}', `https://x.w.example.com:${port}/curl`])
    const [body, v] = stdout.split('\n')
    const seen = JSON.parse(body ?? '') as { url: string, headers: Record<string, string> }
    assert.equal(v, version)
    assert.equal(seen.url, '/curl')
    assert.equal(seen.headers.host, `x.w.example.com:${port}`)
    assert.equal(seen.headers['x-forwarded-server-name'], 'x.w.example.com')
  }
})

test('https:// backends are verified with the pool tls settings (ca, servername)', async t => {
  const pki = await makePki(t)
  await pki.issue(['front.example.com'])
  const be = await pki.issue(['backend.internal'])
  const { writeFile } = await import('node:fs/promises')
  await writeFile(`${pki.dir}/ca.pem`, pki.ca.cert)
  const server = https.createServer({ cert: be.pem.cert, key: be.pem.key }, (req, res) => { res.end(`tls backend saw ${String(req.headers.host)}`) })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.after(() => { server.closeAllConnections(); server.close() })
  const bport = (server.address() as { port: number }).port
  const e = await startEdge(t, pki.dir, `${silentToml}
[[listeners]]
name = "s"
listen = "127.0.0.1:0"
protocol = "https"
certificates = [{ cert = "front.example.com.pem", key = "front.example.com.key" }]
[[routes]]
match.path_prefix = "/good"
pool = "good"
[[routes]]
pool = "unverified"
[pools.good]
backends = ["https://127.0.0.1:${bport}"]
tls = { ca = "ca.pem", servername = "backend.internal" }
[pools.unverified]
backends = ["https://localhost:${bport}"]
`)
  const good = await get(e.port('s'), 'front.example.com', pki.ca.cert, '/good')
  assert.equal(good.status, 200)
  assert.equal(good.body, 'tls backend saw front.example.com')
  // Without the pool's CA the backend's certificate is not trusted: a gateway error, not a silent pass.
  const bad = await get(e.port('s'), 'front.example.com', pki.ca.cert, '/other')
  assert.equal(bad.status, 502)
})

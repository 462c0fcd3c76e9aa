// TLS listeners against clients that misbehave, on the real CLI: a handshake that never completes (nothing sent,
// half a ClientHello, a whole one and then silence) is closed within headers_timeout on https and passthrough
// listeners; a passthrough splice with no bytes either way is closed after tunnel_idle_timeout, a busy one is not.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import http2 from 'node:http2'
import net from 'node:net'
import { join } from 'node:path'
import tls from 'node:tls'
import { freePort, runCli, spawnCli, waitUntil, type CliEdge } from './helpers.js'
import { makePki, type Pki } from './tls-fixtures.js'

/** What node's TLS client sends first, captured by a plain TCP server. */
async function captureHello (servername: string): Promise<Buffer> {
  const server = net.createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      server.once('connection', s => {
        let buf = Buffer.alloc(0)
        s.on('data', d => {
          buf = Buffer.concat([buf, d])
          if (buf.length >= 5 && buf.length >= 5 + buf.readUInt16BE(3)) { resolve(buf); s.destroy() }
        })
      })
      const c = tls.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, servername })
      c.on('error', () => {})
      setTimeout(() => { reject(new Error('no hello')) }, 3000).unref()
    })
  } finally {
    server.close()
  }
}

/** Connects, writes `bytes` (if any) and resolves with the ms until the edge closed the socket, or -1 past `capMs`. */
function closedAfter (port: number, bytes: Buffer | undefined, capMs: number): Promise<number> {
  return new Promise(resolve => {
    const s = net.connect(port, '127.0.0.1')
    let start = 0
    const timer = setTimeout(() => { s.destroy(); resolve(-1) }, capMs)
    s.on('error', () => {})
    s.on('data', () => {}) // a ServerHello may come back; only the close matters
    s.on('connect', () => { start = Date.now(); if (bytes !== undefined) s.write(bytes) })
    s.on('close', () => { clearTimeout(timer); resolve(Date.now() - start) })
  })
}

/**
 * A TLS backend with its own certificate that echoes what it reads; "push" makes it send a byte every 100 ms for
 * 1.2 s instead (traffic one way only). `open` counts its connections still open.
 */
async function tlsEchoBackend (t: TestContext, pki: Pki): Promise<{ port: number, open: () => number }> {
  const { pem } = await pki.issue(['db.example.com'])
  const open = new Set<tls.TLSSocket>()
  const server = tls.createServer({ cert: pem.cert, key: pem.key }, s => {
    s.on('error', () => {})
    s.on('data', (d: Buffer) => {
      if (!d.toString().startsWith('push')) { s.write(d); return }
      let n = 0
      const iv = setInterval(() => { if (++n > 12 || s.destroyed) clearInterval(iv); else s.write('x') }, 100)
    })
  })
  server.on('secureConnection', s => { open.add(s); s.once('close', () => open.delete(s)) })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.after(() => { for (const s of open) s.destroy(); server.close() })
  return { port: (server.address() as net.AddressInfo).port, open: () => open.size }
}

interface TlsEdge {
  readonly cli: CliEdge
  readonly pki: Pki
  readonly https: number
  readonly passthrough: number
  readonly backendOpen: () => number
}

/** The real CLI with an https listener and a passthrough listener (to an echoing TLS backend). */
async function tlsEdge (t: TestContext, server: string): Promise<TlsEdge> {
  const pki = await makePki(t)
  const www = await pki.issue(['www.example.com'])
  const db = await tlsEchoBackend(t, pki)
  const https = await freePort()
  const passthrough = await freePort()
  const cli = await spawnCli(t, `
[[listeners]]
name = "websecure"
listen = "127.0.0.1:${https}"
protocol = "https"
certificates = [{ cert = "${www.cert}", key = "${www.key}" }]

[[listeners]]
name = "passthrough"
listen = "127.0.0.1:${passthrough}"
protocol = "tls"

[server]
${server}

[[routes]]
listener = "passthrough"
match.sni = "db.example.com"
pool = "db"

[[routes]]
respond = { status = 200, body = "ok" }

[pools.db]
backends = ["tcp://127.0.0.1:${db.port}"]
`, { listeningCount: 3 })
  return { cli, pki, https, passthrough, backendOpen: db.open }
}

test('handshakes that never complete are closed within headers_timeout (https and passthrough listeners)', async t => {
  const e = await tlsEdge(t, 'headers_timeout = "300ms"')
  const hello = await captureHello('www.example.com')
  const half = hello.subarray(0, Math.floor(hello.length / 2))
  const cases: Array<[string, number, Buffer | undefined]> = [
    ['https, nothing sent', e.https, undefined],
    ['https, half a ClientHello', e.https, half],
    ['https, a whole ClientHello and then silence', e.https, hello],
    ['passthrough, nothing sent', e.passthrough, undefined],
    ['passthrough, half a ClientHello', e.passthrough, half],
  ]
  const times = await Promise.all(cases.map(([, port, bytes]) => closedAfter(port, bytes, 3000)))
  for (const [i, [what]] of cases.entries()) {
    const ms = times[i] as number
    assert.ok(ms >= 0, `${what}: still open after 3 s`)
    assert.ok(ms >= 250 && ms < 1300, `${what}: closed after ${ms} ms, expected about 300 ms`)
  }
  // The listeners still serve after all that.
  const ok = await new Promise<boolean>((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: e.https, servername: 'www.example.com', ca: e.pki.ca.cert }, () => { s.destroy(); resolve(true) })
    s.on('error', reject)
  })
  assert.equal(ok, true)
})

/** A TLS client through the passthrough listener to the echo backend; `closedAt` is set when the edge closes it. */
async function throughPassthrough (e: TlsEdge): Promise<{ socket: tls.TLSSocket, received: () => number, closedAt: () => number }> {
  let received = 0
  let closedAt = 0
  const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: e.passthrough, servername: 'db.example.com', ca: e.pki.ca.cert }, () => { resolve(s) })
    s.on('error', reject)
  })
  socket.on('error', () => {})
  socket.on('data', (d: Buffer) => { received += d.length })
  socket.on('close', () => { closedAt = Date.now() })
  return { socket, received: () => received, closedAt: () => closedAt }
}

test('tunnel_idle_timeout closes an idle passthrough splice (both sides), not one with bytes going either way', async t => {
  const e = await tlsEdge(t, 'tunnel_idle_timeout = "300ms"')
  const idle = await throughPassthrough(e)
  const idleFrom = Date.now() // its idle clock runs from here, however long the next two handshakes take
  const talking = await throughPassthrough(e)
  const listening = await throughPassthrough(e)
  t.after(() => { idle.socket.destroy(); talking.socket.destroy(); listening.socket.destroy() })
  listening.socket.write('push') // from here on only the backend sends
  let sent = 0
  await new Promise<void>(resolve => {
    const iv = setInterval(() => {
      if (++sent > 11) { clearInterval(iv); resolve(); return }
      talking.socket.write('y')
    }, 100)
  })
  const idleMs = idle.closedAt() - idleFrom
  assert.ok(idle.closedAt() > 0, 'the idle splice is still open after 1.1 s')
  assert.ok(idleMs >= 250 && idleMs < 1000, `the idle splice closed after ${idleMs} ms, expected about 300 ms`)
  assert.equal(talking.closedAt(), 0, 'a splice the client wrote to every 100 ms was closed')
  assert.equal(listening.closedAt(), 0, 'a splice the backend wrote to every 100 ms was closed')
  assert.equal(talking.received(), 11, 'every byte the client sent came back')
  assert.ok(listening.received() >= 10, `the backend's bytes arrived (${listening.received()})`)
  // Both go quiet: both are closed, and so are the edge's connections to the backend.
  await waitUntil(() => talking.closedAt() > 0 && listening.closedAt() > 0, 2000, 'the quiet splices to close')
  await waitUntil(() => e.backendOpen() === 0, 2000, 'the backend side of every splice to close')
})

/**
 * A raw HTTP/1.1 backend that answers every request head with Content-Length: 10 and 3 bytes, then stalls; or, with
 * `upgrade`, with 101 and then silence. `open` counts the connections it answered on that are still open (undici
 * may open a spare one after an abort, which carries no request).
 */
async function stallingBackend (t: TestContext, upgrade = false): Promise<{ port: number, open: () => number }> {
  const sockets = new Set<net.Socket>()
  const answering = new Set<net.Socket>()
  const server = net.createServer(s => {
    sockets.add(s)
    s.on('close', () => { sockets.delete(s); answering.delete(s) })
    s.on('error', () => {})
    let head = ''
    s.on('data', d => {
      head += d.toString('latin1')
      if (!head.includes('\r\n\r\n')) return
      head = ''
      answering.add(s)
      s.write(upgrade
        ? 'HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n'
        : 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 10\r\n\r\nabc')
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.after(() => { for (const s of sockets) s.destroy(); server.close() })
  return { port: (server.address() as net.AddressInfo).port, open: () => answering.size }
}

/** The CLI with one https listener in front of `backend`, shutdown_timeout = 1s. */
async function httpsEdge (t: TestContext, backend: number): Promise<{ cli: CliEdge, pki: Pki, port: number }> {
  const pki = await makePki(t)
  const www = await pki.issue(['www.example.com'])
  const port = await freePort()
  const cli = await spawnCli(t, `
[[listeners]]
name = "websecure"
listen = "127.0.0.1:${port}"
protocol = "https"
certificates = [{ cert = "${www.cert}", key = "${www.key}" }]

[server]
shutdown_timeout = "1s"

[[routes]]
pool = "app"

[pools.app]
backends = ["http://127.0.0.1:${backend}"]
`, { listeningCount: 2 })
  return { cli, pki, port }
}

/** SIGTERM, then the ms until the CLI exited (-1 if it had not after 5 s). */
async function stopTime (cli: CliEdge): Promise<number> {
  const signalled = Date.now()
  cli.child.kill('SIGTERM')
  const exit = await Promise.race([cli.exited, new Promise<undefined>(resolve => { setTimeout(() => { resolve(undefined) }, 5000) })])
  if (exit === undefined) return -1
  assert.equal(exit.code, 0)
  return Date.now() - signalled
}

const resets: Array<[string, (session: http2.ClientHttp2Session) => http2.ClientHttp2Stream]> = [
  // The client cancels while the backend's answer is under way.
  ['the client resets the stream mid-answer', session => {
    const req = session.request({ ':path': '/', host: 'www.example.com' })
    req.once('data', () => { req.close(http2.constants.NGHTTP2_CANCEL) })
    req.end()
    return req
  }],
  // content-length 10 and 3 bytes of DATA: node resets the stream (PROTOCOL_ERROR) before the edge sees a body.
  ['the client\'s body is shorter than its content-length', session => {
    const req = session.request({ ':path': '/', ':method': 'POST', host: 'www.example.com', 'content-length': '10' })
    req.end('abc')
    return req
  }],
]

for (const [what, send] of resets) {
  test(`an HTTP/2 stream reset (${what}) ends the upstream request, and SIGTERM exits within shutdown_timeout`, async t => {
    const backend = await stallingBackend(t)
    const e = await httpsEdge(t, backend.port)
    const session = http2.connect(`https://127.0.0.1:${e.port}`, { ca: e.pki.ca.cert, servername: 'www.example.com' })
    session.on('error', () => {})
    t.after(() => { session.destroy() })
    const req = send(session)
    req.on('error', () => {})
    await new Promise(resolve => { req.on('close', resolve) })
    assert.equal(req.rstCode !== http2.constants.NGHTTP2_NO_ERROR, true, 'the stream was reset')
    // Before: the backend request ran on until the route timeout (30 s), and shutdown waited for it.
    await waitUntil(() => backend.open() === 0, 2000, 'the edge to close its connection to the backend')
    const ms = await stopTime(e.cli)
    t.diagnostic(`exit ${ms} ms after SIGTERM`)
    assert.ok(ms >= 0 && ms < 2000, `exit took ${ms < 0 ? 'over 5000' : ms} ms with shutdown_timeout = 1 s`)
  })
}

test('SIGTERM exits within shutdown_timeout with a WebSocket upgraded over TLS still open', async t => {
  const backend = await stallingBackend(t, true)
  const e = await httpsEdge(t, backend.port)
  const s = tls.connect({ host: '127.0.0.1', port: e.port, servername: 'www.example.com', ca: e.pki.ca.cert, ALPNProtocols: ['http/1.1'] })
  s.on('error', () => {})
  t.after(() => { s.destroy() })
  let got = ''
  s.on('data', d => { got += String(d) })
  s.write('GET /ws HTTP/1.1\r\nhost: www.example.com\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n')
  await waitUntil(() => got.includes('101'), 3000, 'the 101')
  // Before: the TLS server's close waited for the upgraded socket, which nothing cut.
  const ms = await stopTime(e.cli)
  t.diagnostic(`exit ${ms} ms after SIGTERM`)
  assert.ok(ms >= 0 && ms < 2000, `exit took ${ms < 0 ? 'over 5000' : ms} ms with shutdown_timeout = 1 s`)
})

/** A TLS 1.2 handshake offering only `cipher`: the suite agreed on, or the error. */
function tls12With (port: number, cipher: string, ca: string, servername: string): Promise<string> {
  return new Promise(resolve => {
    const s = tls.connect({ host: '127.0.0.1', port, servername, ca, ciphers: cipher, maxVersion: 'TLSv1.2', checkServerIdentity: () => undefined }, () => {
      resolve(s.getCipher().name)
      s.destroy()
    })
    s.on('error', err => { resolve(`refused: ${err.message}`) })
  })
}

test('TLS 1.2 offers AEAD suites only by default (https and tunnel listeners); a listener\'s ciphers key changes that', async t => {
  const pki = await makePki(t)
  const www = await pki.issue(['www.example.com'])
  const https = await freePort()
  const legacy = await freePort()
  const tunnel = await freePort()
  await spawnCli(t, `
[[listeners]]
name = "websecure"
listen = "127.0.0.1:${https}"
protocol = "https"
certificates = [{ cert = "${www.cert}", key = "${www.key}" }]

[[listeners]]
name = "legacy"
listen = "127.0.0.1:${legacy}"
protocol = "https"
certificates = [{ cert = "${www.cert}", key = "${www.key}" }]
ciphers = "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES128-GCM-SHA256"

[tunnel]
listen = "127.0.0.1:${tunnel}"
secret = "tls-hostile-test-secret-0123456789"
allow = ["*.tunnel.test"]
tls = { cert = "${www.cert}", key = "${www.key}" }

[[routes]]
respond = { status = 200, body = "ok" }
`, { listeningCount: 3 })
  const ca = pki.ca.cert
  const cbc = 'ECDHE-ECDSA-AES128-SHA' // the test certificates are ECDSA (P-256)
  const gcm = 'ECDHE-ECDSA-AES128-GCM-SHA256'
  for (const port of [https, tunnel]) {
    assert.match(await tls12With(port, cbc, ca, 'www.example.com'), /^refused: .*handshake failure/i, `a CBC suite on port ${port}`)
    assert.equal(await tls12With(port, gcm, ca, 'www.example.com'), gcm)
    assert.equal(await tls12With(port, 'ECDHE-ECDSA-CHACHA20-POLY1305', ca, 'www.example.com'), 'ECDHE-ECDSA-CHACHA20-POLY1305')
  }
  assert.equal(await tls12With(legacy, cbc, ca, 'www.example.com'), cbc)
  assert.equal(await tls12With(legacy, gcm, ca, 'www.example.com'), gcm)
  // TLS 1.3 is untouched.
  const v13 = await new Promise<string>((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: https, servername: 'www.example.com', ca }, () => { resolve(`${s.getProtocol() ?? ''} ${s.getCipher().name}`); s.destroy() })
    s.on('error', reject)
  })
  assert.match(v13, /^TLSv1\.3 TLS_/)
  // openssl as the client too (what testssl.sh drives): the CBC suite gets no handshake.
  const sclient = spawnSync('openssl', ['s_client', '-connect', `127.0.0.1:${https}`, '-tls1_2', '-cipher', cbc, '-servername', 'www.example.com'], { input: '', encoding: 'utf8', timeout: 5000 })
  assert.notEqual(sclient.status, 0, `openssl s_client agreed on ${cbc}:\n${sclient.stdout}`)
  const sgcm = spawnSync('openssl', ['s_client', '-connect', `127.0.0.1:${https}`, '-tls1_2', '-cipher', gcm, '-servername', 'www.example.com'], { input: '', encoding: 'utf8', timeout: 5000 })
  assert.match(sgcm.stdout, new RegExp(`Cipher is ${gcm}`))
})

test('a ciphers string OpenSSL refuses is a config error naming its key', async t => {
  const pki = await makePki(t)
  const www = await pki.issue(['www.example.com'])
  const file = join(pki.dir, 'bad.toml')
  await writeFile(file, `
[[listeners]]
name = "websecure"
listen = "127.0.0.1:0"
protocol = "https"
certificates = [{ cert = "${www.cert}", key = "${www.key}" }]
ciphers = "NOT-A-CIPHER:ALSO-NOT"

[[listeners]]
name = "web"
listen = "127.0.0.1:0"
ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256"
`)
  const r = await runCli(['check', '--config', file])
  assert.notEqual(r.code, 0)
  const out = r.stdout + r.stderr
  assert.match(out, /listeners\[0\]\.ciphers: OpenSSL refuses the cipher list "NOT-A-CIPHER:ALSO-NOT"/)
  assert.match(out, /listeners\[1\]\.ciphers: ciphers only applies to protocol = "https"/)
})

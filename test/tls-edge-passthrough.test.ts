// tls (passthrough) listeners wired into the edge: match.sni routes to tcp:// pools, the client verifies the
// backend's own certificate, a ClientHello dribbled one byte per write still routes, the pool's balancer and
// in-flight counts are used, and 1000 garbage inputs each to a passthrough and an https listener never crash the
// edge. Also openssl s_client as a real client.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import tls from 'node:tls'
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { makePki, type Pki } from './tls-fixtures.js'
import { echoBackend, silentToml, startEdge, type RunningEdge } from './tls-edge-util.js'

/** A TLS backend with its own certificate that answers "<name>:<first line>" and closes. */
async function tlsBackend (t: TestContext, pki: Pki, name: string, names: string[]): Promise<number> {
  const { pem } = await pki.issue(names)
  const server = tls.createServer({ cert: pem.cert, key: pem.key }, s => {
    s.on('error', () => {})
    s.once('data', d => { s.end(`${name}:${String(d).trim()}`) })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.after(() => { server.close() })
  return (server.address() as net.AddressInfo).port
}

function ask (port: number, servername: string, ca: string, connectPort = port): Promise<string> {
  return new Promise((resolve, reject) => {
    // Default checkServerIdentity: the backend's certificate must be valid for `servername`.
    const s = tls.connect({ host: '127.0.0.1', port: connectPort, servername, ca }, () => { s.write('hello\n') })
    let out = ''
    s.on('data', d => { out += String(d) })
    s.on('end', () => { resolve(out) })
    s.on('error', reject)
  })
}

async function setup (t: TestContext): Promise<{ pki: Pki, e: RunningEdge, dbPorts: number[] }> {
  const pki = await makePki(t)
  const db1 = await tlsBackend(t, pki, 'DB1', ['db.example.com'])
  const db2 = await tlsBackend(t, pki, 'DB2', ['db.example.com'])
  const cache = await tlsBackend(t, pki, 'CACHE', ['*.cache.example.com'])
  const dflt = await tlsBackend(t, pki, 'DEFAULT', ['other.example.net'])
  await pki.issue(['www.example.com'])
  const backend = await echoBackend(t)
  const e = await startEdge(t, pki.dir, `${silentToml}
[server]
headers_timeout = "1s"

[[listeners]]
name = "passthrough"
listen = "127.0.0.1:0"
protocol = "tls"

[[listeners]]
name = "websecure"
listen = "127.0.0.1:0"
protocol = "https"
certificates = [{ cert = "www.example.com.pem", key = "www.example.com.key" }]

[[routes]]
listener = "passthrough"
match.sni = "db.example.com"
pool = "db"

[[routes]]
listener = "passthrough"
match.sni = "*.cache.example.com"
pool = "cache"

[[routes]]
listener = "passthrough"
pool = "fallback"

[[routes]]
pool = "web"

[pools.db]
backends = ["tcp://127.0.0.1:${db1}", "tcp://127.0.0.1:${db2}"]
[pools.cache]
backends = ["tcp://127.0.0.1:${cache}"]
[pools.fallback]
backends = ["tcp://127.0.0.1:${dflt}"]
[pools.web]
backends = ["http://127.0.0.1:${backend.port}"]
`)
  return { pki, e, dbPorts: [db1, db2] }
}

test('match.sni routes to tcp:// pools; the client verifies the backend certificate; round robin across the pool', async t => {
  const { pki, e } = await setup(t)
  const port = e.port('passthrough')
  const db = [await ask(port, 'db.example.com', pki.ca.cert), await ask(port, 'db.example.com', pki.ca.cert)]
  assert.deepEqual(db.sort(), ['DB1:hello', 'DB2:hello'])
  assert.equal(await ask(port, 'x.cache.example.com', pki.ca.cert), 'CACHE:hello')
  assert.equal(await ask(port, 'other.example.net', pki.ca.cert), 'DEFAULT:hello')
  // The edge holds no certificate of its own here: the name the client expects must be on the backend's.
  await assert.rejects(ask(port, 'x.cache.example.com', pki.ca.cert).then(() => ask(port, 'nomatch.example.net', pki.ca.cert)))
  const pool = e.edge.table().pool('db')
  assert.equal(pool?.members.reduce((n, m) => n + m.backend.requests, 0), 2)
  assert.equal(pool?.members.reduce((n, m) => n + m.backend.inflight, 0), 0)
})

test('a ClientHello split into 1-byte writes still routes through the edge', async t => {
  const { pki, e } = await setup(t)
  const port = e.port('passthrough')
  const relay = net.createServer(c => {
    const up = net.connect(port, '127.0.0.1')
    up.setNoDelay(true)
    c.on('error', () => {}); up.on('error', () => {})
    const queue: number[] = []
    let pumping = false
    const pump = (): void => {
      const b = queue.shift()
      if (b === undefined) { pumping = false; return }
      up.write(Buffer.from([b]))
      setImmediate(pump)
    }
    c.on('data', (d: Buffer) => { queue.push(...d); if (!pumping) { pumping = true; pump() } })
    up.pipe(c)
    c.on('close', () => { up.destroy() })
    up.on('close', () => { c.destroy() })
  })
  await new Promise<void>(resolve => relay.listen(0, '127.0.0.1', resolve))
  t.after(() => { relay.close() })
  const relayPort = (relay.address() as net.AddressInfo).port
  assert.equal(await ask(port, 'x.cache.example.com', pki.ca.cert, relayPort), 'CACHE:hello')
})

async function garbage (port: number, n: number, seed: Buffer[]): Promise<void> {
  let next = 0
  const one = async (): Promise<void> => {
    while (next < n) {
      const i = next++
      // Half pure noise; half start like a TLS handshake record (and a real hello's prefix) to get deeper.
      const noise = randomBytes(1 + (i * 7919) % 1500)
      const head = seed[i % seed.length] as Buffer
      const data = i % 2 === 0 ? noise : Buffer.concat([head.subarray(0, (i * 31) % head.length), noise])
      await new Promise<void>(resolve => {
        const s = net.connect(port, '127.0.0.1', () => { s.end(data) })
        const timer = setTimeout(() => { s.destroy(); resolve() }, 3000)
        s.on('error', () => {})
        s.resume()
        s.on('close', () => { clearTimeout(timer); resolve() })
      })
    }
  }
  await Promise.all(Array.from({ length: 50 }, one))
}

test('1000 garbage inputs each to a passthrough and an https listener never crash the edge', async t => {
  const { pki, e } = await setup(t)
  // A real ClientHello, captured, as seed for the mutated inputs.
  const captured = await new Promise<Buffer>(resolve => {
    const srv = net.createServer(c => { c.once('data', d => { resolve(d); c.destroy(); srv.close() }) })
    srv.listen(0, '127.0.0.1', () => {
      const s = tls.connect({ host: '127.0.0.1', port: (srv.address() as net.AddressInfo).port, servername: 'db.example.com', rejectUnauthorized: false })
      s.on('error', () => {})
    })
  })
  const seeds = [captured, Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03])]
  await Promise.all([garbage(e.port('passthrough'), 1000, seeds), garbage(e.port('websecure'), 1000, seeds)])
  // Still serving both ways.
  assert.equal(await ask(e.port('passthrough'), 'x.cache.example.com', pki.ca.cert), 'CACHE:hello')
  const h = await new Promise<string>((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: e.port('websecure'), servername: 'www.example.com', ca: pki.ca.cert }, () => {
      s.write('GET /alive HTTP/1.1\r\nhost: www.example.com\r\nconnection: close\r\n\r\n')
    })
    let out = ''
    s.on('data', d => { out += String(d) })
    s.on('end', () => { resolve(out) })
    s.on('error', reject)
  })
  assert.match(h, /^HTTP\/1\.1 200 /)
  assert.match(h, /"url":"\/alive"/)
})

test('openssl s_client (real client) through the passthrough verifies the backend certificate', async t => {
  const { pki, e } = await setup(t)
  const { execFile: ef } = await import('node:child_process')
  const caFile = `${pki.dir}/ca.pem`
  await writeFile(caFile, pki.ca.cert)
  const out = await new Promise<string | undefined>(resolve => {
    const child = ef('openssl', ['s_client', '-connect', `127.0.0.1:${e.port('passthrough')}`, '-servername', 'x.cache.example.com', '-CAfile', caFile, '-verify_return_error', '-verify_hostname', 'x.cache.example.com', '-quiet'], { timeout: 8000 }, (err, stdout, stderr) => {
      if (err !== null && (err as NodeJS.ErrnoException).code === 'ENOENT') { resolve(undefined); return }
      resolve(`${stdout}\n${stderr}`)
    })
    child.stdin?.end('hello\n')
  })
  if (out === undefined) { t.skip('openssl not installed'); return }
  assert.match(out, /CACHE:hello/)
  assert.match(out, /verify return:1/)
})

test('each passthrough connection is one access-log line: listener, SNI, backend, bytes each way, duration, end', async t => {
  const pki = await makePki(t)
  const db = await tlsBackend(t, pki, 'DB', ['db.example.com'])
  const { readFile } = await import('node:fs/promises')
  const { join } = await import('node:path')
  const file = join(pki.dir, 'access.log')
  const e = await startEdge(t, pki.dir, `${silentToml.replace('access = "off"', `access = ${JSON.stringify(file)}`)}
[[listeners]]
name = "passthrough"
listen = "127.0.0.1:0"
protocol = "tls"

[[routes]]
listener = "passthrough"
match.sni = "db.example.com"
pool = "db"

[pools.db]
backends = ["tcp://127.0.0.1:${db}"]
`)
  const port = e.port('passthrough')
  assert.equal(await ask(port, 'db.example.com', pki.ca.cert), 'DB:hello')
  await assert.rejects(ask(port, 'nomatch.example.net', pki.ca.cert))
  let lines: Array<Record<string, unknown>> = []
  for (let i = 0; i < 100 && lines.length < 2; i++) {
    await new Promise(resolve => setTimeout(resolve, 50))
    lines = (await readFile(file, 'utf8').catch(() => '')).split('\n').filter(l => l !== '').map(l => JSON.parse(l) as Record<string, unknown>).filter(r => r.msg === 'connection')
  }
  const ok = lines.find(r => r.end === 'closed')
  assert.ok(ok !== undefined, JSON.stringify(lines))
  assert.equal(ok.listener, 'passthrough')
  assert.equal(ok.sni, 'db.example.com')
  assert.equal(ok.backend, `tcp://127.0.0.1:${db}`)
  assert.equal(ok.client_ip, '127.0.0.1')
  assert.ok((ok.bytes_in as number) > 200 && (ok.bytes_out as number) > 200, JSON.stringify(ok)) // handshakes both ways
  assert.ok((ok.duration_ms as number) > 0)
  const refused = lines.find(r => r.end === 'rejected')
  assert.ok(refused !== undefined, JSON.stringify(lines))
  assert.equal(refused.sni, 'nomatch.example.net')
  assert.match(String(refused.error), /no-route/)
})

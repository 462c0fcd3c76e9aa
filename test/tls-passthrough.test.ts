// SNI passthrough: connections are routed by the ClientHello's name to TLS backends that terminate themselves;
// the client verifies the backend's own certificate through the edge. Unknown names and garbage are closed.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import tls from 'node:tls'
import { TlsPassthroughListener, sniRoutes, type PassthroughEvent, type PassthroughOptions } from '../proxy/tls/passthrough.js'
import { makePki, type Pki } from './tls-fixtures.js'

/** A TLS backend that answers "<name>:<first line it got>" and closes. */
async function backend (t: TestContext, pki: Pki, name: string, names: string[]): Promise<number> {
  const { pem } = await pki.issue(names)
  const server = tls.createServer({ cert: pem.cert, key: pem.key }, s => {
    s.on('error', () => {})
    s.once('data', d => { s.end(`${name}:${String(d).trim()}`) })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.after(() => { server.close() })
  return (server.address() as net.AddressInfo).port
}

async function edge (t: TestContext, opts: PassthroughOptions): Promise<{ port: number, events: PassthroughEvent[], edge: TlsPassthroughListener }> {
  const events: PassthroughEvent[] = []
  const e = new TlsPassthroughListener({ ...opts, onEvent: ev => { events.push(ev) } })
  await e.listen(0, '127.0.0.1')
  t.after(() => e.close(0))
  return { port: e.address().port, events, edge: e }
}

/** Full client: strict hostname check against the test CA; resolves with what the backend said. */
async function ask (port: number, servername: string | undefined, ca: string, via?: (c: tls.ConnectionOptions) => tls.ConnectionOptions): Promise<string> {
  const base: tls.ConnectionOptions = { host: '127.0.0.1', port, ca, ...(servername === undefined ? {} : { servername }) }
  return await new Promise((resolve, reject) => {
    const s = tls.connect(via === undefined ? base : via(base), () => { s.write('hello\n') })
    let out = ''
    s.on('data', d => { out += String(d) })
    s.on('end', () => { resolve(out) })
    s.on('error', reject)
  })
}

test('routes two SNI names (exact and wildcard) to their own TLS backends; the client trusts the backend cert', async t => {
  const pki = await makePki(t)
  const aPort = await backend(t, pki, 'A', ['a.example.com'])
  const bPort = await backend(t, pki, 'B', ['*.b.example.com'])
  const { port, events } = await edge(t, {
    pick: sniRoutes([
      { sni: 'a.example.com', target: `tcp://127.0.0.1:${aPort}` },
      { sni: '*.b.example.com', target: `tcp://127.0.0.1:${bPort}` },
    ]),
  })
  assert.equal(await ask(port, 'a.example.com', pki.ca.cert), 'A:hello')
  assert.equal(await ask(port, 'x.b.example.com', pki.ca.cert), 'B:hello')
  assert.deepEqual(events.filter(e => e.type === 'routed').map(e => e.type === 'routed' && [e.sni, e.target.port]), [['a.example.com', aPort], ['x.b.example.com', bPort]])
  // The edge holds no certificate: a client expecting another name fails verification of the backend's cert.
  await assert.rejects(ask(port, 'a.example.com', pki.ca.cert, o => ({ ...o, checkServerIdentity: () => new Error('pinned elsewhere') })))
})

test('a ClientHello arriving 1 byte per write still routes', async t => {
  const pki = await makePki(t)
  const aPort = await backend(t, pki, 'A', ['a.example.com'])
  const { port } = await edge(t, { pick: sniRoutes([{ sni: 'a.example.com', target: `tcp://127.0.0.1:${aPort}` }]) })
  // A relay in front of the edge that dribbles the first 2 KiB from the client one byte per write.
  const relay = net.createServer(c => {
    const up = net.connect(port, '127.0.0.1')
    up.setNoDelay(true)
    c.on('error', () => {}); up.on('error', () => {})
    const queue: number[] = []
    let sent = 0
    let pumping = false
    const pump = (): void => {
      if (pumping) return
      pumping = true
      const step = (): void => {
        const b = queue.shift()
        if (b === undefined) { pumping = false; return }
        up.write(Buffer.from([b]))
        sent++
        setTimeout(step, sent < 50 ? 1 : 0)
      }
      step()
    }
    c.on('data', (d: Buffer) => {
      if (sent + queue.length < 2048) { for (const b of d) queue.push(b); pump() } else up.write(d)
    })
    up.pipe(c)
  })
  await new Promise<void>(resolve => relay.listen(0, '127.0.0.1', resolve))
  t.after(() => { relay.close() })
  const got = await ask((relay.address() as net.AddressInfo).port, 'a.example.com', pki.ca.cert)
  assert.equal(got, 'A:hello')
})

test('no SNI goes to the default; unknown names with no default get unrecognized_name; garbage is closed', async t => {
  const pki = await makePki(t)
  const aPort = await backend(t, pki, 'A', ['a.example.com', '127.0.0.1'])
  const routes = [{ sni: 'a.example.com', target: `tcp://127.0.0.1:${aPort}` }]
  const withDefault = await edge(t, { pick: sniRoutes(routes, `tcp://127.0.0.1:${aPort}`) })
  assert.equal(await ask(withDefault.port, undefined, pki.ca.cert), 'A:hello')

  const strict = await edge(t, { pick: sniRoutes(routes), helloTimeoutMs: 300 })
  await assert.rejects(ask(strict.port, 'nobody.example.com', pki.ca.cert), (err: Error & { code?: string }) => /UNRECOGNIZED_NAME/.test(err.code ?? err.message))
  await assert.rejects(ask(strict.port, undefined, pki.ca.cert), (err: Error & { code?: string }) => /UNRECOGNIZED_NAME/.test(err.code ?? err.message))

  // Plain HTTP on the TLS port is closed at once; a silent client is cut at the hello timeout.
  const closedAfter = async (payload: string | undefined): Promise<number> => {
    const start = Date.now()
    await new Promise<void>(resolve => {
      const s = net.connect(strict.port, '127.0.0.1', () => { if (payload !== undefined) s.write(payload) })
      s.on('error', () => {})
      s.on('close', () => { resolve() })
      s.resume()
    })
    return Date.now() - start
  }
  assert.ok(await closedAfter('GET / HTTP/1.1\r\nHost: x\r\n\r\n') < 250)
  const silent = await closedAfter(undefined)
  assert.ok(silent >= 250 && silent < 2000, `closed after ${silent} ms`)
  assert.deepEqual(strict.events.map(e => e.type === 'rejected' && e.reason), ['no-route', 'no-route', 'invalid-hello', 'hello-timeout'])
  await new Promise(resolve => setTimeout(resolve, 20))
  assert.equal(strict.edge.connections, 0)
})

test('a large response followed by the backend closing arrives whole (no data lost to an early destroy)', async t => {
  const pki = await makePki(t)
  const { pem } = await pki.issue(['big.example.com'])
  const size = 4 * 1024 * 1024
  const server = tls.createServer({ cert: pem.cert, key: pem.key }, s => {
    s.on('error', () => {})
    s.once('data', () => { s.end(Buffer.alloc(size, 0x61)) })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.after(() => { server.close() })
  const { port, edge: e } = await edge(t, { pick: () => ({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port }) })
  const got = await new Promise<number>((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'big.example.com', ca: pki.ca.cert }, () => { s.write('go') })
    let n = 0
    // A slow reader: the edge's buffer toward the client is full when the backend closes.
    s.on('data', d => { n += d.length; s.pause(); setTimeout(() => s.resume(), 1) })
    s.on('end', () => { resolve(n) })
    s.on('error', reject)
  })
  assert.equal(got, size)
  await new Promise(resolve => setTimeout(resolve, 50))
  assert.equal(e.connections, 0)
})

// TLS termination's certificate store: SNI picks the right certificate, no SNI gets the default, rotation on disk
// reaches new handshakes without disturbing open connections, and a bad replacement keeps the old certificate.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import tls from 'node:tls'
import type { AddressInfo } from 'node:net'
import { CertStore, type CertStoreEvent, type CertStoreOptions } from '../proxy/tls/sni.js'
import { describeCertificate, issueCertificate } from '../proxy/tls/certs.js'
import { handshake, makePki, onceEvent } from './tls-fixtures.js'
import type { TestContext } from 'node:test'

async function serve (t: TestContext, options: CertStoreOptions): Promise<{ store: CertStore, port: number, events: CertStoreEvent[], listeners: Array<(e: CertStoreEvent) => void> }> {
  const events: CertStoreEvent[] = []
  const listeners: Array<(e: CertStoreEvent) => void> = []
  const store = new CertStore({ ...options, onEvent: e => { events.push(e); for (const l of listeners) l(e) } })
  await store.start()
  // An echo server: lets the test prove an open connection still carries data after rotation.
  const server = tls.createServer(store.serverOptions(), s => { s.on('error', () => {}); s.pipe(s) })
  store.attach(server)
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.after(() => { store.close(); server.close() })
  return { store, port: (server.address() as AddressInfo).port, events, listeners }
}

test('SNI picks exact names, a one-label wildcard, and the default otherwise', async t => {
  const pki = await makePki(t)
  const def = await pki.issue(['default.test'])
  const a = await pki.issue(['a.example.com'])
  const b = await pki.issue(['b.example.com'])
  const c = await pki.issue(['c.example.org', 'www.c.example.org'])
  const w = await pki.issue(['*.example.com'])
  const { port, store } = await serve(t, { certificates: [def, a, b, c, w], defaultCertificate: 'default.test', watch: false })
  const cases: Array<[string | undefined, string[]]> = [
    ['a.example.com', ['a.example.com']],
    ['B.Example.COM', ['b.example.com']],
    ['www.c.example.org', ['c.example.org', 'www.c.example.org']],
    ['zzz.example.com', ['*.example.com']],
    ['deep.zzz.example.com', ['default.test']], // a wildcard covers exactly one label
    ['unknown.test', ['default.test']],
    [undefined, ['default.test']], // an IP host sends no SNI
  ]
  for (const [sni, names] of cases) {
    const h = await handshake(port, sni, pki.ca.cert)
    assert.equal(h.authorized, true, `chain trusted for ${String(sni)}`)
    assert.deepEqual(h.names, names, `certificate for ${String(sni)}`)
    h.socket.destroy()
  }
  // The strict client check passes for a name with its own certificate.
  const strict = await handshake(port, 'a.example.com', pki.ca.cert, { checkServerIdentity: tls.checkServerIdentity })
  strict.socket.destroy()
  assert.deepEqual(store.certificates().map(s => [s.names[0], s.isDefault]), [
    ['default.test', true], ['a.example.com', false], ['b.example.com', false], ['c.example.org', false], ['*.example.com', false],
  ])
})

test('a directory loads every pair, skips the CA and certs without keys, and honours a default by file', async t => {
  const pki = await makePki(t)
  await pki.issue(['one.test'])
  const two = await pki.issue(['two.test'])
  await writeFile(`${pki.dir}/ca.pem`, pki.ca.cert)
  await writeFile(`${pki.dir}/ca.key`, pki.ca.key)
  await writeFile(`${pki.dir}/chain-only.pem`, pki.ca.cert)
  const { port, events } = await serve(t, { directory: pki.dir, defaultCertificate: two.cert, watch: false })
  assert.deepEqual(events.filter(e => e.type === 'skipped').map(e => [e.cert.split('/').pop(), e.type === 'skipped' && e.reason]).sort(), [
    ['ca.pem', 'a CA certificate, not a server certificate'],
    ['chain-only.pem', 'no matching key file'],
  ])
  for (const [sni, name] of [['one.test', 'one.test'], [undefined, 'two.test']] as const) {
    const h = await handshake(port, sni, pki.ca.cert)
    h.socket.destroy()
    assert.deepEqual(h.names, [name])
  }
})

test('a rotated certificate reaches new handshakes; an open connection keeps working', async t => {
  const pki = await makePki(t)
  const a = await pki.issue(['a.example.com'])
  const { port, listeners } = await serve(t, { certificates: [a], debounceMs: 50, pollIntervalMs: 0 }) // fs.watch alone
  const before = await handshake(port, 'a.example.com', pki.ca.cert)
  t.after(() => before.socket.destroy())
  const loaded = onceEvent<CertStoreEvent>(fn => listeners.push(fn), e => e.type === 'loaded')
  const rotated = await pki.issue(['a.example.com']) // same paths, written atomically
  await loaded
  const after = await handshake(port, 'a.example.com', pki.ca.cert)
  after.socket.destroy()
  assert.notEqual(after.fingerprint, before.fingerprint)
  assert.equal(after.fingerprint, describeCertificate(rotated.pem.cert).fingerprint256)
  // Clients without SNI use the server's own context, which attach() keeps on the new default.
  const noSni = await handshake(port, undefined, pki.ca.cert)
  noSni.socket.destroy()
  assert.equal(noSni.fingerprint, after.fingerprint)
  // The old connection: same certificate, still echoing.
  assert.equal(before.socket.getPeerCertificate().fingerprint256, before.fingerprint)
  before.socket.write('still here')
  const echo = await new Promise<string>(resolve => before.socket.once('data', d => { resolve(String(d)) }))
  assert.equal(echo, 'still here')
})

test('a bad replacement keeps the old certificate and says why; reload() re-reads on demand', async t => {
  const pki = await makePki(t)
  const a = await pki.issue(['a.example.com'])
  const { port, events, store } = await serve(t, { certificates: [a], watch: false })
  const first = await handshake(port, 'a.example.com', pki.ca.cert)
  first.socket.destroy()
  const original = first.fingerprint
  const stillOriginal = async (): Promise<void> => {
    const h = await handshake(port, 'a.example.com', pki.ca.cert)
    h.socket.destroy()
    assert.equal(h.fingerprint, original)
  }

  await writeFile(a.cert, '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n')
  await store.reload()
  const r1 = events.at(-1)
  assert.equal(r1?.type, 'rejected')
  assert.ok(r1?.type === 'rejected' && r1.keptPrevious && /unparsable certificate/.test(r1.reason), JSON.stringify(r1))
  await stillOriginal()

  // A valid certificate whose key is some other certificate's key.
  const other = await issueCertificate(pki.ca, { names: ['a.example.com'] })
  await writeFile(a.cert, other.cert)
  await store.reload()
  const r2 = events.at(-1)
  assert.ok(r2?.type === 'rejected' && /does not match/.test(r2.reason), JSON.stringify(r2))
  await stillOriginal()
  // The same bad file is reported once, not on every pass.
  const count = events.length
  await store.reload()
  assert.equal(events.length, count)

  // Fixing the key completes the pair: the new certificate goes live.
  await writeFile(a.key, other.key)
  await store.reload()
  assert.equal(events.at(-1)?.type, 'loaded')
  const h = await handshake(port, 'a.example.com', pki.ca.cert)
  h.socket.destroy()
  assert.equal(h.fingerprint, describeCertificate(other.cert).fingerprint256)
})

test('expired certificates load with a warning; ones close to expiry are flagged', async t => {
  const pki = await makePki(t)
  const now = Date.now()
  const old = await pki.issue(['old.test'], { notBefore: new Date(now - 10 * 86_400_000), notAfter: new Date(now - 86_400_000) })
  const soon = await pki.issue(['soon.test'], { days: 5 })
  const fine = await pki.issue(['fine.test'], { days: 60 })
  const { events, store } = await serve(t, { certificates: [fine, soon, old], watch: false })
  assert.deepEqual(events.filter(e => e.type === 'expired' || e.type === 'expiring').map(e => [e.type, e.names[0]]),
    [['expiring', 'soon.test'], ['expired', 'old.test']])
  assert.deepEqual(store.certificates().map(c => [c.names[0], c.expiresSoon]), [['fine.test', false], ['soon.test', true], ['old.test', true]])
  assert.ok(store.certificates().every(c => c.notAfter instanceof Date))
})

test('start() refuses a listed pair that does not load', async t => {
  const pki = await makePki(t)
  const a = await pki.issue(['a.example.com'])
  const b = await pki.issue(['b.example.com'])
  const store = new CertStore({ certificates: [{ cert: a.cert, key: b.key }], watch: false })
  t.after(() => { store.close() })
  await assert.rejects(store.start(), (err: Error & { code?: string }) => err.code === 'EP_ERR_TLS_CERT' && /does not match/.test(err.message))
})

test('mTLS: with clientCa, a client without a certificate is refused and one with a CA-signed certificate is let in', async t => {
  const pki = await makePki(t)
  const a = await pki.issue(['a.example.com'])
  const client = await issueCertificate(pki.ca, { names: ['client.test'], clientAuth: true })
  const { port } = await serve(t, { certificates: [a], clientCa: pki.ca.cert, minVersion: 'TLSv1.2', watch: false })
  const ok = await handshake(port, 'a.example.com', pki.ca.cert, { cert: client.cert, key: client.key })
  ok.socket.write('hi')
  assert.equal(await new Promise<string>(resolve => ok.socket.once('data', d => { resolve(String(d)) })), 'hi')
  ok.socket.destroy()
  // TLS 1.3 reports the missing client certificate after the handshake, as an error on first read.
  const refused = await new Promise<string>(resolve => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'a.example.com', ca: pki.ca.cert, checkServerIdentity: () => undefined })
    s.on('error', err => { resolve((err as { code?: string }).code ?? err.message) })
    s.on('secureConnect', () => { s.write('x') })
    s.on('data', () => { resolve('got data') })
  })
  assert.match(refused, /CERTIFICATE_REQUIRED|ECONNRESET|HANDSHAKE/)
})

test('reconfigure() swaps the certificate set under the same server; a bad new set changes nothing', async t => {
  const pki = await makePki(t)
  const a = await pki.issue(['a.example.com'])
  const b = await pki.issue(['b.example.com'])
  const c = await pki.issue(['c.example.com'])
  const { port, store } = await serve(t, { certificates: [a], watch: false })
  const names = async (sni: string | undefined): Promise<string[]> => {
    const h = await handshake(port, sni, pki.ca.cert)
    h.socket.destroy()
    return h.names
  }
  assert.deepEqual(await names(undefined), ['a.example.com'])
  await store.reconfigure({ certificates: [a, b], defaultCertificate: 'b.example.com', watch: false })
  assert.deepEqual([await names('a.example.com'), await names(undefined)], [['a.example.com'], ['b.example.com']])
  await assert.rejects(store.reconfigure({ certificates: [b, { cert: c.cert, key: a.key }], watch: false }), /does not match/)
  assert.deepEqual([await names('a.example.com'), await names('c.example.com'), await names(undefined)],
    [['a.example.com'], ['b.example.com'], ['b.example.com']])
})

test('a certificate whose first name is over 64 characters (no CN, an empty subject) is described by its SAN names', async t => {
  const pki = await makePki(t)
  const long = `service-0.a-rather-long-internal-subdomain.of-the-payments.example.com`
  assert.ok(long.length > 64)
  const pair = await issueCertificate(pki.ca, { names: [long] })
  const info = describeCertificate(pair.cert)
  assert.deepEqual(info.dnsNames, [long])
  assert.equal(info.commonName, undefined)
  assert.equal(info.subject, '')
})

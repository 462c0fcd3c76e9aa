// OCSP stapling against a real responder: a test CA, a leaf whose Authority Information Access names
// http://127.0.0.1:<port>/, and an HTTP server there answering with what `openssl ocsp` (responder mode) signs
// for each request. On the CLI, clients asking for status (node's requestOCSP, openssl s_client -status) get the
// stapled answer, a certificate file without its issuer is skipped, and nothing of it slows or breaks a
// handshake. The stapler itself: a failing responder is retried with backoff, a revoked answer is not stapled, a
// forged one is refused.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import { execFile, spawnSync } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import tls from 'node:tls'
import { promisify } from 'node:util'
import { createCa } from '../proxy/tls/certs.js'
import { checkOcspResponse, ocspRequest } from '../proxy/tls/ocsp.js'
import { OcspStapler, refreshDelay, retryDelay, type StapleEvent } from '../proxy/tls/stapler.js'
import { freePort, spawnCli, waitUntil } from './helpers.js'
import { tempDir } from './tls-fixtures.js'

const run = promisify(execFile)

interface Responder {
  readonly url: string
  /** Requests answered so far. */
  requests: number
  /** The next this-many requests get HTTP 500. */
  failNext: number
  /** "V" (valid) or "R" (revoked): what the CA's index says of every leaf. */
  state: 'V' | 'R'
}

interface OcspPki {
  readonly dir: string
  readonly ca: { readonly cert: string, readonly key: string, readonly pem: string }
  readonly responder: Responder
  /** A leaf for `name` naming the responder; its file holds the chain (leaf, CA) unless `chain` is false. */
  issue (name: string, serial: string, chain?: boolean): Promise<{ cert: string, key: string }>
}

/** A CA on disk and an OCSP responder for it: an HTTP server handing each request to `openssl ocsp -index`. */
async function ocspPki (t: TestContext): Promise<OcspPki> {
  const dir = await tempDir(t, 'edge-ocsp-')
  const ca = await createCa({ commonName: 'edge-proxy OCSP test CA' })
  const caFiles = { cert: join(dir, 'ca.pem'), key: join(dir, 'ca.key'), pem: ca.cert }
  await writeFile(caFiles.cert, ca.cert)
  await writeFile(caFiles.key, ca.key)
  const leaves: Array<{ serial: string, name: string }> = []
  const index = join(dir, 'index.txt')
  const responder: Responder = { url: '', requests: 0, failNext: 0, state: 'V' }
  let n = 0
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (d: Buffer) => chunks.push(d))
    req.on('end', () => {
      responder.requests++
      if (responder.failNext > 0) { responder.failNext--; res.writeHead(500).end(); return }
      const id = ++n
      const reqFile = join(dir, `req-${id}.der`)
      const respFile = join(dir, `resp-${id}.der`)
      // One line per leaf (openssl's index wants distinct subjects): state, expiry, revocation time, serial.
      const lines = leaves.map(l => `${responder.state}\t301231235959Z\t${responder.state === 'R' ? '261201000000Z' : ''}\t${l.serial}\tunknown\t/CN=${l.name}\n`).join('')
      writeFile(index, lines)
        .then(() => writeFile(reqFile, Buffer.concat(chunks)))
        .then(() => run('openssl', ['ocsp', '-index', index, '-rsigner', caFiles.cert, '-rkey', caFiles.key, '-CA', caFiles.cert, '-reqin', reqFile, '-respout', respFile, '-ndays', '1']))
        .then(() => readFile(respFile))
        .then(body => { res.writeHead(200, { 'content-type': 'application/ocsp-response' }).end(body) })
        .catch(() => { res.writeHead(500).end() })
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.after(() => { server.closeAllConnections(); server.close() })
  Object.assign(responder, { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/` })
  return {
    dir,
    ca: caFiles,
    responder,
    async issue (name, serial, chain = true) {
      leaves.push({ serial, name })
      const key = join(dir, `${name}.key`)
      const csr = join(dir, `${name}.csr`)
      const leaf = join(dir, `${name}.leaf.pem`)
      const ext = join(dir, `${name}.ext`)
      await writeFile(ext, [
        'basicConstraints = critical,CA:FALSE', 'keyUsage = critical,digitalSignature', 'extendedKeyUsage = serverAuth',
        `subjectAltName = DNS:${name}`, `authorityInfoAccess = OCSP;URI:${responder.url}`,
      ].join('\n'))
      await run('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key])
      await run('openssl', ['req', '-new', '-key', key, '-subj', `/CN=${name}`, '-out', csr])
      await run('openssl', ['x509', '-req', '-in', csr, '-CA', caFiles.cert, '-CAkey', caFiles.key, '-set_serial', `0x${serial}`, '-days', '30', '-extfile', ext, '-out', leaf])
      const cert = join(dir, `${name}.pem`)
      await writeFile(cert, (await readFile(leaf, 'utf8')) + (chain ? ca.cert : ''))
      return { cert, key }
    },
  }
}

/** A TLS handshake asking for certificate status: the stapled answer (DER) or undefined. */
function stapledTo (port: number, servername: string, ca: string, requestOCSP = true): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    let stapled: Buffer | undefined
    // requestOCSP is a tls.connect option node documents; @types/node lists it on TLSSocket only.
    const options: tls.ConnectionOptions & { requestOCSP: boolean } = { host: '127.0.0.1', port, servername, ca, requestOCSP }
    const s = tls.connect(options, () => { s.destroy(); resolve(stapled) })
    s.on('OCSPResponse', (r: Buffer | null) => { stapled = r !== null && r.length > 0 ? r : undefined }) // null: nothing stapled
    s.on('error', reject)
  })
}

test('an https listener staples the OCSP answer of a certificate that names a responder (node and openssl clients)', async t => {
  const pki = await ocspPki(t)
  const www = await pki.issue('www.example.com', '1A2B3C')
  const api = await pki.issue('api.example.com', '2B3C4D')
  const lone = await pki.issue('lone.example.com', '4D5E6F', false)
  const port = await freePort()
  const cli = await spawnCli(t, `
[[listeners]]
name = "websecure"
listen = "127.0.0.1:${port}"
protocol = "https"
certificates = [
  { cert = "${www.cert}", key = "${www.key}" },
  { cert = "${api.cert}", key = "${api.key}" },
  { cert = "${lone.cert}", key = "${lone.key}" },
]

[[routes]]
respond = { status = 200, body = "ok" }
`, { listeningCount: 2, level: 'debug' })
  await waitUntil(() => cli.events.filter(e => e.msg === 'OCSP response stapled').length === 2, 10_000, 'both OCSP responses to be stapled')
  const stapled = cli.events.filter(e => e.msg === 'OCSP response stapled')
  assert.deepEqual(stapled.map(e => e.cert).sort(), [api.cert, www.cert].sort())
  assert.equal(stapled[0]?.responder, pki.responder.url)
  const skipped = await cli.waitForEvent(e => e.msg === 'OCSP stapling skipped', 5000, 'the chainless certificate to be skipped')
  assert.equal(skipped.cert, lone.cert)
  assert.match(String(skipped.reason), /no issuer certificate/)
  const fetched = pki.responder.requests

  const der = await stapledTo(port, 'www.example.com', pki.ca.pem)
  assert.ok(der !== undefined, 'no OCSP response was stapled')
  const leaf = new X509Certificate(await readFile(www.cert))
  const issuer = new X509Certificate(pki.ca.pem)
  assert.equal(checkOcspResponse(der, leaf, issuer).status, 'good')
  // openssl's own verdict on the stapled bytes, and s_client -status as testssl.sh would use it.
  const respFile = join(pki.dir, 'stapled.der')
  await writeFile(respFile, der)
  const verdict = spawnSync('openssl', ['ocsp', '-respin', respFile, '-CAfile', pki.ca.cert, '-issuer', pki.ca.cert, '-cert', www.cert], { encoding: 'utf8' })
  assert.match(verdict.stdout, /: good/, verdict.stderr)
  assert.match(verdict.stderr, /Response verify OK/)
  const sclient = spawnSync('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'www.example.com', '-status', '-CAfile', pki.ca.cert], { input: '', encoding: 'utf8', timeout: 5000 })
  assert.match(sclient.stdout, /OCSP Response Status: successful/)
  assert.match(sclient.stdout, /Cert Status: good/)

  // Handshakes never wait on the responder: they were answered from what was fetched at load.
  assert.equal(pki.responder.requests, fetched)
  // A certificate chosen by SNI gets its own answer, not the default certificate's.
  const apiDer = await stapledTo(port, 'api.example.com', pki.ca.pem)
  assert.ok(apiDer !== undefined, 'nothing stapled for api.example.com')
  assert.equal(checkOcspResponse(apiDer, new X509Certificate(await readFile(api.cert)), issuer).status, 'good')
  assert.throws(() => checkOcspResponse(apiDer, leaf, issuer), /no answer about this certificate/)
  assert.equal(await stapledTo(port, 'lone.example.com', pki.ca.pem), undefined, 'the chainless certificate got a staple')
  assert.equal(await stapledTo(port, 'www.example.com', pki.ca.pem, false), undefined, 'a client that did not ask got a staple')
})

test('the stapler retries a failing responder with backoff, never staples a revoked answer, refuses a forged one', async t => {
  const pki = await ocspPki(t)
  const www = await pki.issue('www.example.com', '0A0B0C')
  const certPem = await readFile(www.cert, 'utf8')
  const leaf = new X509Certificate(certPem)
  const events: StapleEvent[] = []
  pki.responder.failNext = 2
  const stapler = new OcspStapler({ onEvent: e => events.push(e), retryBaseMs: 100 })
  t.after(() => { stapler.close() })
  stapler.sync([{ file: www.cert, certPem }])
  await waitUntil(() => stapler.staple(leaf.raw) !== undefined, 5000, 'a staple after two failures')
  assert.deepEqual(events.map(e => e.type), ['ocsp-failed', 'ocsp-failed', 'ocsp-stapled'])
  const retries = events.flatMap(e => e.type === 'ocsp-failed' ? [e.retryInMs] : [])
  assert.deepEqual(retries, [100, 200])
  assert.match((events[0] as { reason: string }).reason, /HTTP 500/)
  assert.equal(pki.responder.requests, 3)

  // Revoked: the next answer is signed and current, but nothing is stapled and the operator is told.
  pki.responder.state = 'R'
  const revoked = new OcspStapler({ onEvent: e => events.push(e) })
  t.after(() => { revoked.close() })
  revoked.sync([{ file: www.cert, certPem }])
  await waitUntil(() => events.some(e => e.type === 'ocsp-revoked'), 5000, 'the revoked verdict')
  assert.equal(revoked.staple(leaf.raw), undefined)

  // A response signed by another CA for the same certificate is refused.
  const other = await createCa({ commonName: 'not the issuer' })
  const otherDir = await tempDir(t, 'edge-ocsp-other-')
  await writeFile(join(otherDir, 'ca.pem'), other.cert)
  await writeFile(join(otherDir, 'ca.key'), other.key)
  await writeFile(join(otherDir, 'index.txt'), `V\t301231235959Z\t\t0A0B0C\tunknown\t/CN=www.example.com\n`)
  await writeFile(join(otherDir, 'req.der'), ocspRequest(leaf, new X509Certificate(pki.ca.pem)))
  await run('openssl', ['ocsp', '-index', join(otherDir, 'index.txt'), '-rsigner', join(otherDir, 'ca.pem'), '-rkey', join(otherDir, 'ca.key'), '-CA', join(otherDir, 'ca.pem'), '-reqin', join(otherDir, 'req.der'), '-respout', join(otherDir, 'resp.der'), '-ndays', '1'])
  const forged = await readFile(join(otherDir, 'resp.der'))
  assert.throws(() => { checkOcspResponse(forged, leaf, new X509Certificate(pki.ca.pem)) }, /signature/)
})

test('refresh and retry schedule: halfway to nextUpdate within 1 min .. 1 h; backoff 10 s doubling to 1 h', () => {
  const now = Date.parse('2026-01-01T00:00:00Z')
  assert.equal(refreshDelay(new Date(now + 7 * 86_400_000), now), 3_600_000)
  assert.equal(refreshDelay(new Date(now + 40 * 60_000), now), 20 * 60_000)
  assert.equal(refreshDelay(new Date(now + 30_000), now), 60_000)
  assert.equal(refreshDelay(undefined, now), 3_600_000)
  assert.deepEqual([1, 2, 3, 4, 10, 50].map(n => retryDelay(n)), [10_000, 20_000, 40_000, 80_000, 3_600_000, 3_600_000])
})

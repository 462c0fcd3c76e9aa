// `edge-proxy cert ca|issue|inspect` as functions, cross-checked with openssl when it is installed, and the demo
// certificates `npm start` makes on first run and reuses afterwards.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readFile, stat, writeFile } from 'node:fs/promises'
import https from 'node:https'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { AddressInfo } from 'node:net'
import { runCertCommand } from '../cli/cert.js'
import { describeCertificate } from '../proxy/tls/certs.js'
import { createLocalPki, ensureDemoCertificates } from '../proxy/tls/demo-certs.js'
import { tempDir } from './tls-fixtures.js'

const run = promisify(execFile)

async function cert (argv: string[]): Promise<{ code: number, out: string, err: string }> {
  let out = ''
  let err = ''
  const code = await runCertCommand(argv, { stdout: { write: s => { out += s } }, stderr: { write: s => { err += s } } })
  return { code, out, err }
}

async function openssl (args: string[]): Promise<string | undefined> {
  try {
    const { stdout } = await run('openssl', args)
    return stdout
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return undefined
    throw err
  }
}

test('cert ca makes ca.pem and a 0600 ca.key, and refuses to overwrite them without --force', async t => {
  const dir = await tempDir(t)
  const first = await cert(['ca', '--out', dir])
  assert.equal(first.code, 0, first.err)
  assert.equal((await stat(join(dir, 'ca.key'))).mode & 0o777, 0o600)
  const pem = await readFile(join(dir, 'ca.pem'), 'utf8')
  assert.equal(describeCertificate(pem).isCa, true)
  const again = await cert(['ca', '--out', dir])
  assert.equal(again.code, 1)
  assert.match(again.err, /exists.*--force/)
  assert.equal(await readFile(join(dir, 'ca.pem'), 'utf8'), pem)
  const forced = await cert(['ca', '--out', dir, '--force', '--name', 'Other CA'])
  assert.equal(forced.code, 0)
  assert.equal(describeCertificate(await readFile(join(dir, 'ca.pem'), 'utf8')).commonName, 'Other CA')
})

test('cert issue writes a leaf named after the first name, with SANs and server auth, that openssl verifies', async t => {
  const dir = await tempDir(t)
  const out = join(dir, 'leafs')
  assert.equal((await cert(['ca', '--out', dir])).code, 0)
  const r = await cert(['issue', '--ca', dir, '--name', '*.example.com', '--name', 'example.com', '--name', '127.0.0.1', '--out', out, '--days', '30'])
  assert.equal(r.code, 0, r.err)
  const leafFile = join(out, '_wildcard.example.com.pem')
  assert.equal((await stat(join(out, '_wildcard.example.com.key'))).mode & 0o777, 0o600)
  const info = describeCertificate(await readFile(leafFile))
  assert.deepEqual([info.dnsNames, info.ipAddresses, info.isCa], [['*.example.com', 'example.com'], ['127.0.0.1'], false])
  const days = Math.round((info.notAfter.getTime() - Date.now()) / 86_400_000)
  assert.equal(days, 30)

  const text = await openssl(['x509', '-in', leafFile, '-noout', '-text'])
  if (text === undefined) { t.diagnostic('openssl not installed: cross-check skipped'); return }
  assert.match(text, /DNS:\*\.example\.com, DNS:example\.com, IP Address:127\.0\.0\.1/)
  assert.match(text, /TLS Web Server Authentication/)
  assert.match(text, /CA:FALSE/)
  assert.match(text, /ecdsa-with-SHA256/)
  assert.match(text, /Issuer: CN ?= ?edge-proxy local CA/)
  const verify = await openssl(['verify', '-CAfile', join(dir, 'ca.pem'), '-purpose', 'sslserver', leafFile])
  assert.match(verify ?? '', /: OK/)
})

test('cert inspect prints subject, names, issuer, validity and days left; bad input exits non-zero', async t => {
  const dir = await tempDir(t)
  await cert(['ca', '--out', dir])
  await cert(['issue', '--ca', dir, '--name', 'svc.internal', '--days', '10'])
  const r = await cert(['inspect', join(dir, 'svc.internal.pem')])
  assert.equal(r.code, 0, r.err)
  assert.match(r.out, /subject: +CN=svc\.internal/)
  assert.match(r.out, /names: +DNS:svc\.internal/)
  assert.match(r.out, /issuer: +CN=edge-proxy local CA\n/)
  assert.match(r.out, /valid: +\S+ \.\. \S+ \(9 days left\)/)
  await writeFile(join(dir, 'junk.pem'), 'nothing here')
  assert.equal((await cert(['inspect', join(dir, 'junk.pem')])).code, 1)
  assert.equal((await cert(['inspect'])).code, 2)
  assert.equal((await cert(['issue', '--ca', dir, '--name', 'bad name!'])).code, 2)
  assert.equal((await cert(['issue', '--ca', dir])).code, 2)
  assert.equal((await cert(['bogus'])).code, 2)
  assert.equal((await cert(['issue', '--ca', join(dir, 'missing'), '--name', 'a.test'])).code, 1)
})

test('demo certificates: made on first run, reused after, remade when broken; they serve https', async t => {
  const dir = join(await tempDir(t), '.demo-certs')
  const first = await ensureDemoCertificates(dir)
  assert.equal(first.created, true)
  const second = await ensureDemoCertificates(dir)
  assert.equal(second.created, false)
  assert.equal(second.leaf.cert, first.leaf.cert)
  await writeFile(first.files.key, (await createLocalPki(['localhost'])).leaf.key) // mismatched key
  const third = await ensureDemoCertificates(dir)
  assert.equal(third.created, true)

  const server = https.createServer({ cert: third.leaf.cert, key: third.leaf.key }, (_req, res) => { res.end('ok') })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.after(() => { server.close() })
  const body = await new Promise<string>((resolve, reject) => {
    https.get({ host: '127.0.0.1', servername: 'localhost', port: (server.address() as AddressInfo).port, ca: third.ca.cert, agent: false }, res => {
      let b = ''
      res.on('data', d => { b += String(d) })
      res.on('end', () => { resolve(b) })
    }).on('error', reject)
  })
  assert.equal(body, 'ok')
})

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { writeFileSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'node:http'
import { signToken, verifyToken, resolveSecret } from '../packer/token.js'
import { grantNames, covers, matchName, NameTable } from '../packer/names.js'
import type { TunnelError } from '../packer/errors.js'
import type { Grant } from '../packer/payload.js'
import { SECRET, startEdge, startClient, registered, token } from './packer-util.js'

function codeOf (fn: () => unknown): string {
  try { fn() } catch (err) { return (err as TunnelError).code }
  return 'no error'
}

test('HS256 tokens: valid, bad signature, expired, malformed', () => {
  const t0 = signToken({ sub: 'svc', names: ['app.tunnel.test'], ttlMs: 60_000 }, SECRET)
  const c = verifyToken(t0, SECRET)
  assert.equal(c.sub, 'svc')
  assert.deepEqual(c.names, ['app.tunnel.test'])
  assert.ok(c.exp > c.iat)
  assert.equal(codeOf(() => verifyToken(t0, Buffer.from('other-secret'))), 'EP_ERR_TOKEN_BAD_SIGNATURE')
  const [h, p, s] = t0.split('.') as [string, string, string]
  const forged = Buffer.from(JSON.stringify({ sub: 'svc', names: ['*'], exp: 9e9, iat: 0 })).toString('base64url')
  assert.equal(codeOf(() => verifyToken(`${h}.${forged}.${s}`, SECRET)), 'EP_ERR_TOKEN_BAD_SIGNATURE')
  assert.equal(codeOf(() => verifyToken(`${h}.${p}.${s.slice(0, -4)}`, SECRET)), 'EP_ERR_TOKEN_BAD_SIGNATURE')
  const old = signToken({ sub: 'svc', names: ['a'], ttlMs: 1000, now: Date.now() - 10_000 }, SECRET)
  assert.equal(codeOf(() => verifyToken(old, SECRET)), 'EP_ERR_TOKEN_EXPIRED')
  for (const bad of ['', 'a.b', 'a.b.c.d', '!!.??.**', 'x'.repeat(9000), `${Buffer.from('{"alg":"none"}').toString('base64url')}.${p}.`]) {
    assert.equal(codeOf(() => verifyToken(bad, SECRET)), 'EP_ERR_TOKEN_MALFORMED', bad.slice(0, 20))
  }
})

test('secret specs: env:, file:, literal', () => {
  assert.equal(resolveSecret('env:TUNNEL_T', { TUNNEL_T: 's3cret' }).toString(), 's3cret')
  assert.equal(codeOf(() => resolveSecret('env:MISSING', {})), 'EP_ERR_TUNNEL_SECRET')
  const dir = mkdtempSync(join(tmpdir(), 'packer-'))
  writeFileSync(join(dir, 'secret'), 'from-file\n')
  assert.equal(resolveSecret(`file:${join(dir, 'secret')}`).toString(), 'from-file')
  assert.equal(codeOf(() => resolveSecret(`file:${join(dir, 'nope')}`)), 'EP_ERR_TUNNEL_SECRET')
  assert.equal(resolveSecret('literal').toString(), 'literal')
})

test('name rules: wildcards match one or more labels; granted = token ∩ allow', () => {
  assert.ok(matchName('*.tunnel.test', 'app.tunnel.test'))
  assert.ok(matchName('*.tunnel.test', 'a.b.tunnel.test'))
  assert.ok(!matchName('*.tunnel.test', 'tunnel.test'))
  assert.ok(!matchName('*.tunnel.test', 'xtunnel.test'))
  assert.ok(covers('*.tunnel.test', '*.app.tunnel.test'))
  assert.ok(!covers('app.tunnel.test', '*.tunnel.test'))
  assert.ok(!covers('*.app.tunnel.test', '*.tunnel.test'))
  const allow = ['*.tunnel.test', 'exact.other.test']
  const tokenNames = ['app.tunnel.test', '*.dyn.tunnel.test', 'exact.other.test', 'evil.com', '*.other.test']
  const r = grantNames(tokenNames, allow, ['App.Tunnel.Test.', 'x.dyn.tunnel.test', 'exact.other.test', 'evil.com', 'y.other.test', 'db.tunnel.test'])
  assert.deepEqual(r.granted, ['app.tunnel.test', 'x.dyn.tunnel.test', 'exact.other.test'])
  assert.deepEqual(r.refused, ['evil.com', 'y.other.test', 'db.tunnel.test'])
  const table = new NameTable<string>()
  table.add('*.tunnel.test', 'wild'); table.add('app.tunnel.test', 'exact'); table.add('*.x.tunnel.test', 'deeper')
  assert.deepEqual([...table.lookup('app.tunnel.test')!], ['exact'])
  assert.deepEqual([...table.lookup('a.x.tunnel.test')!], ['deeper'])
  assert.deepEqual([...table.lookup('b.tunnel.test')!], ['wild'])
  assert.equal(table.lookup('tunnel.test'), undefined)
})

async function upgradeStatus (url: string, auth: string | undefined): Promise<{ status: number, code: string | undefined }> {
  const u = new URL(url)
  const req = request({ host: u.hostname, port: u.port, path: '/', headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', ...(auth === undefined ? {} : { authorization: auth }) } })
  req.end()
  const [res] = await once(req, 'response') as [import('node:http').IncomingMessage]
  res.resume()
  return { status: res.statusCode ?? 0, code: res.headers['x-tunnel-error'] as string | undefined }
}

test('the edge refuses bad tokens with 401 before upgrading, and grants only allowed names', async t => {
  const { edge, url } = await startEdge(t)
  assert.deepEqual(await upgradeStatus(url, undefined), { status: 401, code: 'EP_ERR_TUNNEL_AUTH' })
  assert.deepEqual(await upgradeStatus(url, `Bearer ${signToken({ sub: 'x', names: ['a.tunnel.test'], ttlMs: 60_000 }, Buffer.from('wrong'))}`), { status: 401, code: 'EP_ERR_TOKEN_BAD_SIGNATURE' })
  assert.deepEqual(await upgradeStatus(url, `Bearer ${signToken({ sub: 'x', names: ['a.tunnel.test'], ttlMs: 1000, now: Date.now() - 5000 }, SECRET)}`), { status: 401, code: 'EP_ERR_TOKEN_EXPIRED' })
  assert.deepEqual(await upgradeStatus(url, 'Bearer not-a-token'), { status: 401, code: 'EP_ERR_TOKEN_MALFORMED' })

  // The token lists app + evil.com; the client claims app, evil.com and one the token lacks.
  const client = startClient(t, url, [
    { service: 'http', name: 'app.tunnel.test', to: 'http://127.0.0.1:9' },
    { service: 'http', name: 'evil.com', to: 'http://127.0.0.1:9' },
    { service: 'tls', name: 'db.tunnel.test', to: 'tcp://127.0.0.1:9' },
  ], { token: token(['app.tunnel.test', 'evil.com']) })
  const [, , grant] = await once(client, 'session') as [string, unknown, Grant]
  assert.deepEqual(grant.granted, [{ service: 'http', name: 'app.tunnel.test' }])
  assert.deepEqual(grant.refused, [{ service: 'http', name: 'evil.com' }, { service: 'tls', name: 'db.tunnel.test' }])
  await registered(edge, 'app.tunnel.test')
  assert.equal(edge.lookup('evil.com').length, 0)
  assert.equal(edge.lookup('db.tunnel.test', 'tls').length, 0)

  // A client with nothing grantable is told so and the session ends.
  const none = startClient(t, url, [{ service: 'http', name: 'evil.com', to: 'http://127.0.0.1:9' }], { token: token(['evil.com']) })
  const [, noneSession, noneGrant] = await once(none, 'session') as [string, import('../packer/session.js').Session, Grant]
  assert.equal(noneGrant.granted.length, 0)
  if (!noneSession.closed) await once(noneSession, 'close')
})

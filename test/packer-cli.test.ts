// The token and tunnel commands, end to end against a real edge.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { PassThrough } from 'node:stream'
import { runTokenCommand } from '../cli/token.js'
import { parseRoutes } from '../cli/tunnel.js'
import { verifyToken } from '../packer/token.js'
import { SECRET, startEdge, registered, tcpServer, CLIENT } from './packer-util.js'

function capture (): { stream: PassThrough, text: () => string } {
  const stream = new PassThrough()
  const chunks: Buffer[] = []
  stream.on('data', c => chunks.push(c as Buffer))
  return { stream, text: () => Buffer.concat(chunks).toString() }
}

test('edge-proxy token prints a token the edge accepts; bad arguments exit 2', () => {
  const out = capture(); const err = capture()
  process.env.PACKER_TEST_SECRET = SECRET.toString()
  assert.equal(runTokenCommand(['--secret', 'env:PACKER_TEST_SECRET', '--name', 'app.tunnel.test', '--name', '*.dyn.tunnel.test', '--ttl', '2h'], out.stream, err.stream), 0)
  const claims = verifyToken(out.text().trim(), SECRET)
  assert.deepEqual(claims.names, ['app.tunnel.test', '*.dyn.tunnel.test'])
  assert.equal(claims.exp - claims.iat, 7200)
  assert.equal(runTokenCommand(['--name', 'x'], out.stream, err.stream), 2)
  assert.equal(runTokenCommand(['--secret', 's', '--name', 'x', '--ttl', 'soon'], out.stream, err.stream), 2)
  assert.equal(runTokenCommand(['--secret', 'env:PACKER_NOT_SET', '--name', 'x'], out.stream, err.stream), 2)
  assert.match(err.text(), /PACKER_NOT_SET is not set/)
})

test('tunnel routes: service prefixes and --to pairing', () => {
  assert.deepEqual(parseRoutes(['app.t.test', 'tls:db.t.test', 'raw.t.test'], ['http://127.0.0.1:3000', 'tcp://127.0.0.1:5432', 'tcp://127.0.0.1:6000'], 2), [
    { service: 'http', name: 'app.t.test', to: 'http://127.0.0.1:3000' },
    { service: 'tls', name: 'db.t.test', to: 'tcp://127.0.0.1:5432', proxyProtocol: 2 },
    { service: 'tcp', name: 'raw.t.test', to: 'tcp://127.0.0.1:6000', proxyProtocol: 2 },
  ])
  assert.throws(() => parseRoutes(['a'], []))
})

test('edge-proxy tunnel serves a name and drains on SIGTERM', async t => {
  const { edge, url } = await startEdge(t)
  const target = await tcpServer(t, sock => { sock.pipe(sock) })
  const out = capture()
  process.env.PACKER_TEST_SECRET = SECRET.toString()
  runTokenCommand(['--secret', 'env:PACKER_TEST_SECRET', '--name', 'app.tunnel.test'], out.stream, out.stream)
  const tunnelJs = fileURLToPath(new URL('../cli/tunnel.js', import.meta.url))
  const script = `const { runTunnelCommand } = await import(${JSON.stringify(tunnelJs)}); process.exitCode = await runTunnelCommand(process.argv.slice(1))`
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, '--',
    '--edge', url, '--token', 'env:TUNNEL_TOKEN', '--name', 'app.tunnel.test', '--to', `http://127.0.0.1:${target.port}`], {
    env: { ...process.env, TUNNEL_TOKEN: out.text().trim() },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  t.after(() => child.kill('SIGKILL'))
  const stderr: Buffer[] = []
  child.stderr.on('data', c => stderr.push(c as Buffer))
  const session = await registered(edge, 'app.tunnel.test')
  const s = edge.openStream(session, { ...CLIENT, service: 'http', servername: 'app.tunnel.test' })
  s.write('through the cli ')
  await once(s, 'data')
  const unregistered = once(edge, 'unregister')
  child.kill('SIGTERM')
  await unregistered // GOAWAY takes the name off the edge at once...
  s.end('and done')
  const rest: Buffer[] = []
  for await (const c of s) rest.push(c as Buffer)
  assert.equal(Buffer.concat(rest).toString(), 'and done') // ...while the open stream still finishes
  const [code] = await once(child, 'exit')
  assert.equal(code, 0)
  assert.match(Buffer.concat(stderr).toString(), /granted http:app\.tunnel\.test/)
})

test('token: a secret under 32 bytes is refused with how to make one; --new-secret makes one that works', () => {
  const out = capture()
  const err = capture()
  process.env.PACKER_SHORT_SECRET = 'abc'
  assert.equal(runTokenCommand(['--secret', 'env:PACKER_SHORT_SECRET', '--name', 'app.tunnel.test'], out.stream, err.stream), 2)
  assert.match(err.text(), /3 bytes; an HS256 key needs at least 32: make one with "edge-proxy token --new-secret"/)
  const made = capture()
  assert.equal(runTokenCommand(['--new-secret'], made.stream, err.stream), 0)
  const secret = made.text().trim()
  assert.match(secret, /^[A-Za-z0-9_-]{43}$/)
  process.env.PACKER_NEW_SECRET = secret
  const tok = capture()
  assert.equal(runTokenCommand(['--secret', 'env:PACKER_NEW_SECRET', '--name', 'app.tunnel.test'], tok.stream, err.stream), 0)
  assert.match(tok.text(), /^[\w-]+\.[\w-]+\.[\w-]+\n$/)
})

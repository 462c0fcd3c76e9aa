// A port that is taken: one line naming what could not listen, where and why, exit 2, no stack trace; for a
// listener with workers = 1 and with workers = 2, for the admin listener and for the tunnel endpoint.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { once } from 'node:events'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { runCli, tempDir } from './helpers.js'

const ROUTE = '[[routes]]\nrespond = { status = 200, body = "x" }\n'

test('a listen address already in use: one line naming it, exit 2, no stack trace', async t => {
  const holder = net.createServer().listen(0, '127.0.0.1')
  await once(holder, 'listening')
  t.after(() => { holder.close() })
  const port = (holder.address() as net.AddressInfo).port
  const dir = await tempDir(t)
  process.env.EDGE_LISTEN_TEST_SECRET = 'listen-errors-test-secret-0123456789abcdef'
  const cases = [
    { name: 'listener, workers = 1', toml: `[admin]\nlisten = "127.0.0.1:0"\n[[listeners]]\nname = "web"\nlisten = "127.0.0.1:${port}"\n${ROUTE}`, what: 'listener "web"' },
    { name: 'listener, workers = 2', toml: `[server]\nworkers = 2\n[admin]\nlisten = "127.0.0.1:0"\n[[listeners]]\nname = "web"\nlisten = "127.0.0.1:${port}"\n${ROUTE}`, what: 'listener "web"' },
    { name: 'admin', toml: `[admin]\nlisten = "127.0.0.1:${port}"\n[[listeners]]\nname = "web"\nlisten = "127.0.0.1:0"\n${ROUTE}`, what: 'the admin listener ([admin] listen)' },
    { name: 'tunnel', toml: `[admin]\nlisten = "127.0.0.1:0"\n[[listeners]]\nname = "web"\nlisten = "127.0.0.1:0"\n[tunnel]\nlisten = "127.0.0.1:${port}"\nsecret = "env:EDGE_LISTEN_TEST_SECRET"\nallow = ["*.tunnel.test"]\n${ROUTE}`, what: 'the tunnel endpoint ([tunnel] listen)' },
  ]
  for (const c of cases) {
    const file = join(dir, `${c.name.replace(/\W+/g, '-')}.toml`)
    await writeFile(file, c.toml)
    const r = await runCli(['--config', file], 20_000)
    assert.equal(r.code, 2, `${c.name}: ${r.stderr}`)
    const plain = r.stderr.split('\n').filter(l => l !== '' && !l.startsWith('{'))
    assert.deepEqual(plain, [`edge-proxy: ${c.what} cannot listen on 127.0.0.1:${port}: address already in use (another process, or an edge already running, holds it: stop it or pick another port)`], c.name)
    assert.doesNotMatch(r.stderr, /\n\s+at /, `${c.name}: no stack trace`)
  }
})

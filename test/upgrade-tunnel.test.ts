// An upgrade (whole-edge hand-over, workers = 1) with a [tunnel] endpoint: the tunnel port is handed over with the
// listeners, the old process sends its tunnel sessions GOAWAY, and the clients dial the new process at once
// (no backoff) while their streams on the old one finish. Real processes: the edge CLI and `edge-proxy tunnel`.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import http from 'node:http'
import { MAIN, SECRET, httpServer, request, startEdge, startRegisteredTunnel } from './tunnel-edge-util.js'
import { waitUntil } from './helpers.js'

function upgrade (admin: number): Promise<{ code: number | null, out: string }> {
  return new Promise(resolve => {
    const child = spawn(process.execPath, [MAIN, 'upgrade', '--admin', `127.0.0.1:${admin}`], { env: { ...process.env, EDGE_TUNNEL_SECRET: SECRET }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => { out += d.toString() })
    child.stderr.on('data', (d: Buffer) => { out += d.toString() })
    child.on('close', code => { resolve({ code, out }) })
  })
}

async function servingPid (admin: number): Promise<number> {
  const st = JSON.parse((await request(admin, '127.0.0.1', '/api/status')).body) as { pids: number[] }
  return st.pids[0] as number
}

test('upgrade with a tunnel endpoint: the port is handed over, tunnel clients move to the new process at once', async t => {
  const edge = await startEdge(t)
  const app = await httpServer(t, (_req: http.IncomingMessage, res: http.ServerResponse) => { res.end('app') })
  const tun = await startRegisteredTunnel(t, edge, 'app.tunnel.test', app.url, ['--name', 'x.tunnel.test', '--to', app.url])
  assert.equal((await request(edge.ports.http, 'app.tunnel.test')).body, 'app')
  const before = await servingPid(edge.admin)
  const from = tun.log.mark
  const up = await upgrade(edge.admin)
  assert.equal(up.code, 0, up.out)
  assert.match(up.out, /received \d+ listening sockets/)
  // The client heard GOAWAY, said so, and was granted its names again by the new process (no backoff wait).
  await tun.log.wait(/is going away.*reconnecting at once/, 5000, from)
  await tun.log.wait(/granted http:app\.tunnel\.test/, 5000, from)
  const after = await servingPid(edge.admin)
  assert.notEqual(after, before)
  await waitUntil(async () => (await request(edge.ports.http, 'app.tunnel.test')).body === 'app', 3000, 'the tunnel through the new process')
  for (let i = 0; i < 5; i++) assert.equal((await request(edge.ports.http, 'app.tunnel.test')).body, 'app')
  assert.equal(tun.child.exitCode, null, 'the tunnel client still runs')
})

test('upgrade with a tls passthrough listener: its port is handed over too, and splices work through the new process', async t => {
  const { makePki } = await import('./tls-fixtures.js')
  const tls = await import('node:tls')
  const { spawnCli, runCli } = await import('./helpers.js')
  const pki = await makePki(t)
  const { pem } = await pki.issue(['db.example.com'])
  const backend = tls.createServer({ cert: pem.cert, key: pem.key }, s => { s.on('error', () => {}); s.once('data', d => { s.end(`DB:${String(d)}`) }) })
  await new Promise<void>(resolve => backend.listen(0, '127.0.0.1', resolve))
  t.after(() => { backend.close() })
  const { freePort } = await import('./helpers.js')
  const pt = await freePort()
  const cli = await spawnCli(t, `
[[listeners]]
name = "passthrough"
listen = "127.0.0.1:${pt}"
protocol = "tls"
[[routes]]
listener = "passthrough"
match.sni = "db.example.com"
pool = "db"
[pools.db]
backends = ["tcp://127.0.0.1:${(backend.address() as import('node:net').AddressInfo).port}"]
[[routes]]
respond = { status = 200, body = "web" }
`, { listeningCount: 2 })
  const ask = (): Promise<string> => new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: pt, servername: 'db.example.com', ca: pki.ca.cert }, () => { s.write('hi') })
    let out = ''
    s.on('data', d => { out += String(d) })
    s.on('end', () => { resolve(out) })
    s.on('error', reject)
  })
  assert.equal(await ask(), 'DB:hi')
  const before = await servingPid(cli.adminPort)
  const up = await runCli(['upgrade', '--admin', `127.0.0.1:${cli.adminPort}`], 60_000)
  assert.equal(up.code, 0, `${up.stdout}\n${up.stderr}`)
  assert.match(up.stdout, /received 3 listening sockets/) // web, passthrough, admin
  assert.notEqual(await servingPid(cli.adminPort), before)
  for (let i = 0; i < 3; i++) assert.equal(await ask(), 'DB:hi')
})

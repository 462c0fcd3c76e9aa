// The admin API against a hostile browser (issue 12, items 4 and 9), on the real CLI: state-changing calls from
// another origin are refused while curl keeps working, a Host that is not the admin's (DNS rebinding) is refused,
// the login cookie is a session value and not the token, the edge never forwards that cookie to a backend, and
// an admin listen name counts as loopback only when it resolves to loopback addresses only.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import http2 from 'node:http2'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { withoutAdminCookie } from '../proxy/forward/headers.js'
import { hostnameOf } from '../proxy/ops/admin-guard.js'
import { isLoopback, isLoopbackIp, loopbackProblem } from '../config/address.js'
import { echoOf, request, spawnCli, startBackend, tempDir, runCli, type Backend, type CliEdge } from './helpers.js'
import { makePki } from './tls-fixtures.js'
import { echoBackend, silentToml, startEdge } from './tls-edge-util.js'

function poolFor (b: Backend): string {
  return `
[[routes]]
pool = "app"

[pools.app]
backends = ["${b.url}"]
`
}

function post (cli: CliEdge, path: string, headers: Record<string, string> = {}, body?: string): ReturnType<typeof request> {
  return request(cli.adminPort, { method: 'POST', path, headers, ...(body === undefined ? {} : { body }) })
}

test('withoutAdminCookie drops every edge_admin pair and keeps the others in order', () => {
  assert.equal(withoutAdminCookie('a=1; edge_admin=xyz; b=2'), 'a=1; b=2')
  assert.equal(withoutAdminCookie('edge_admin=xyz'), '')
  assert.equal(withoutAdminCookie('edge_admin=x; edge_admin=y'), '')
  assert.equal(withoutAdminCookie('edge_admin=x;a=1;edge_admin=y'), 'a=1')
  assert.equal(withoutAdminCookie('a=1;  edge_admin = x ; b=2;'), 'a=1; b=2')
  assert.equal(withoutAdminCookie('my_edge_admin=1; edge_admin_x=2'), 'my_edge_admin=1; edge_admin_x=2', 'other names that contain it stay')
})

test('hostnameOf reads the name of a Host value, port or not', () => {
  assert.equal(hostnameOf('Admin.Example.Internal:9901'), 'admin.example.internal')
  assert.equal(hostnameOf('[::1]:9901'), '::1')
  assert.equal(hostnameOf('[::1]'), '::1')
  assert.equal(hostnameOf('127.0.0.1'), '127.0.0.1')
  assert.equal(hostnameOf('a.example:x'), undefined)
  assert.equal(hostnameOf(':9901'), undefined)
  assert.equal(hostnameOf('[::1'), undefined)
})

test('state-changing admin calls from another origin are refused; curl and the admin\'s own origin are not', async t => {
  const b = await startBackend(t, 'a')
  const cli = await spawnCli(t, poolFor(b))
  const drainPath = `/api/pools/app/backends/${encodeURIComponent(b.url)}/drain`
  const form = { 'content-type': 'application/x-www-form-urlencoded' }
  const refusals: Array<[string, Record<string, string>]> = [
    ['/api/reload', { origin: 'http://evil.example', ...form }],
    ['/api/reload', { origin: 'null' }],
    ['/api/reload', { origin: `http://localhost:${cli.adminPort + 1}` }],
    ['/api/reload', { 'sec-fetch-site': 'cross-site' }],
    ['/api/reload', { 'sec-fetch-site': 'same-site' }],
    ['/api/reload', { 'sec-fetch-site': 'cross-site', origin: `http://127.0.0.1:${cli.adminPort}` }],
    [drainPath, { origin: 'http://evil.example', ...form }],
    ['/api/pools/app/backends/x/undrain', { 'sec-fetch-site': 'cross-site' }],
  ]
  for (const [path, headers] of refusals) {
    const r = await post(cli, path, headers, 'a=1')
    assert.equal(r.status, 403, `${path} ${JSON.stringify(headers)}: ${r.body}`)
    assert.match(r.body, /^403 forbidden: the request comes from another (origin \(Origin: |site \(Sec-Fetch-Site: )/)
  }
  // Nothing changed: the backend is not draining and still serves.
  const st = JSON.parse((await request(cli.adminPort, { path: '/api/status' })).body) as { pools: Array<{ backends: Array<{ draining: boolean }> }> }
  assert.equal(st.pools[0]?.backends[0]?.draining, false)
  assert.equal(echoOf(await request(cli.port, { path: '/x' })).backend, 'a')
  // Reads from another origin are answered, but without CORS headers a page there cannot read them.
  const read = await request(cli.adminPort, { path: '/healthz', headers: { origin: 'http://evil.example' } })
  assert.equal(read.status, 200)
  assert.equal(read.headers['access-control-allow-origin'], undefined)

  // curl sends no Origin: it works as README shows; so does the admin's own origin (the status page).
  const curl = await post(cli, '/api/reload')
  assert.equal(curl.status, 200, curl.body)
  const own = await post(cli, '/api/reload', { origin: `http://127.0.0.1:${cli.adminPort}`, 'sec-fetch-site': 'same-origin' })
  assert.equal(own.status, 200, own.body)
  await cli.waitForEvent(e => e.msg === 'config reloaded' && e.generation === 3, 5000, 'generation 3')
  const reloads = cli.events.filter(e => e.msg === 'config reloaded').map(e => e.generation)
  assert.deepEqual(reloads, [2, 3], 'the refused calls reloaded nothing')
  assert.equal((await post(cli, drainPath, { origin: `http://127.0.0.1:${cli.adminPort}` })).status, 200)
})

test('a Host that is not the admin\'s own name is refused (DNS rebinding); loopback names and [admin] hosts pass', async t => {
  const cli = await spawnCli(t, '', { admin: 'hosts = ["Admin.Example.Internal", "[fd00::1]"]' })
  const p = cli.adminPort
  for (const host of ['rebind.attacker.example', `rebind.attacker.example:${p}`, '127.0.0.1.nip.io', 'localhost.attacker.example', 'admin.example.internal.attacker.example', '10.0.0.1']) {
    for (const path of ['/api/status', '/metrics', '/healthz', '/']) {
      const r = await request(p, { path, headers: { host } })
      assert.equal(r.status, 421, `Host ${host} ${path}`)
      assert.match(r.body, /^421 misdirected request: Host ".*" is not a name of this admin listener/)
      assert.ok(!r.body.includes('edge_requests_total'))
    }
    assert.equal((await request(p, { method: 'POST', path: '/api/reload', headers: { host } })).status, 421)
  }
  for (const host of [`127.0.0.1:${p}`, '127.0.0.1', `localhost:${p}`, 'LOCALHOST', `[::1]:${p}`, 'admin.example.internal', `ADMIN.example.internal:${p}`, '[fd00::1]:8443']) {
    const r = await request(p, { path: '/api/status', headers: { host } })
    assert.equal(r.status, 200, `Host ${host}: ${r.body}`)
  }
  // The Origin must be the Host the request was sent to: an allowed name posting to itself works.
  assert.equal((await post(cli, '/api/reload', { host: 'admin.example.internal', origin: 'http://admin.example.internal' })).status, 200)
  assert.equal((await post(cli, '/api/reload', { host: 'admin.example.internal', origin: `http://127.0.0.1:${p}` })).status, 403)
})

test('[admin] hosts takes names only: a port, scheme or path is a config error', async t => {
  const dir = await tempDir(t)
  for (const bad of ['admin.example:9901', 'http://admin.example', 'admin.example/x', 'a b']) {
    const file = join(dir, 'bad.toml')
    await writeFile(file, `[admin]\nlisten = "127.0.0.1:0"\nhosts = ["${bad}"]\n\n[[listeners]]\nname = "web"\nlisten = "127.0.0.1:0"\n`)
    const r = await runCli(['check', '--config', file])
    assert.equal(r.code, 2, bad)
    assert.match(r.stderr, /admin\.hosts\[0\]: ".*" is not a host name/, bad)
  }
})

test('with a token, the login cookie is a random session value, not the token, and it authenticates', async t => {
  const token = 'the-admin-token-123'
  const cli = await spawnCli(t, '', { admin: `token = "${token}"` })
  const p = cli.adminPort
  const login = await request(p, { path: `/?token=${token}` })
  assert.equal(login.status, 303)
  const setCookie = String(login.headers['set-cookie'])
  const m = /^edge_admin=([A-Za-z0-9_-]{43}); Path=\/; HttpOnly; SameSite=Strict; Max-Age=43200$/.exec(setCookie)
  assert.ok(m !== null, setCookie)
  const value = m[1] as string
  assert.ok(!value.includes(token) && !setCookie.includes(token), 'the token is not in the cookie')
  assert.equal((await request(p, { path: '/api/status', headers: { cookie: `edge_admin=${value}` } })).status, 200)
  assert.equal((await request(p, { path: '/api/status', headers: { cookie: `x=1; edge_admin=bogus; edge_admin=${value}` } })).status, 200)
  assert.equal((await request(p, { path: '/api/status', headers: { cookie: `edge_admin=${token}` } })).status, 401, 'the token is no cookie')
  assert.equal((await request(p, { path: '/api/status', headers: { cookie: `edge_admin=${encodeURIComponent(token)}` } })).status, 401)
  assert.equal((await request(p, { path: '/api/status' })).status, 401)
  // Each login is its own session.
  const again = String((await request(p, { path: `/?token=${token}` })).headers['set-cookie'])
  assert.notEqual(again.split(';')[0], `edge_admin=${value}`)
})

for (const server of ['edge', 'node'] as const) {
  test(`the admin cookie never reaches a backend through a public listener (http1_server = "${server}")`, async t => {
    const b = await startBackend(t, 'a')
    const cli = await spawnCli(t, `${poolFor(b)}\n[server]\nhttp1_server = "${server}"\n`)
    const seen = async (cookie: string): Promise<string | undefined> => {
      const r = echoOf(await request(cli.port, { path: '/c', headers: { cookie } }))
      return r.headers.cookie as string | undefined
    }
    assert.equal(await seen('a=1; edge_admin=xyz; b=2'), 'a=1; b=2')
    assert.equal(await seen('edge_admin=xyz'), undefined)
    assert.equal(b.seen.at(-1)?.rawHeaders.some(h => h.toLowerCase() === 'cookie'), false, 'no empty Cookie field either')
    assert.equal(await seen('a=1; b=2'), 'a=1; b=2', 'other cookies pass untouched')
  })
}

test('the admin cookie never reaches a backend over HTTP/2, in one cookie field or several', async t => {
  const pki = await makePki(t)
  await pki.issue(['app.example.com'])
  const backend = await echoBackend(t)
  const e = await startEdge(t, pki.dir, `${silentToml}
[[listeners]]
name = "s"
listen = "127.0.0.1:0"
protocol = "https"
certificates = [{ cert = "app.example.com.pem", key = "app.example.com.key" }]
[[routes]]
pool = "app"
[pools.app]
backends = ["http://127.0.0.1:${backend.port}"]
`)
  const client = http2.connect(`https://127.0.0.1:${e.port('s')}`, { ca: pki.ca.cert, servername: 'app.example.com' })
  t.after(() => { client.close() })
  const send = (cookie: string | string[]): Promise<{ headers: Record<string, string>, rawHeaders: string[] }> => new Promise((resolve, reject) => {
    const req = client.request({ ':path': '/', ':authority': 'app.example.com', cookie })
    let body = ''
    req.on('data', (d: Buffer) => { body += d.toString() })
    req.on('end', () => { resolve(JSON.parse(body) as { headers: Record<string, string>, rawHeaders: string[] }) })
    req.on('error', reject)
  })
  assert.equal((await send('a=1; edge_admin=xyz; b=2')).headers.cookie, 'a=1; b=2')
  assert.equal((await send(['a=1', 'edge_admin=xyz', 'b=2'])).headers.cookie, 'a=1; b=2')
  const only = await send(['edge_admin=xyz'])
  assert.equal(only.headers.cookie, undefined)
  assert.ok(!only.rawHeaders.some(h => h.toLowerCase() === 'cookie'))
})

test('loopback is decided on addresses: IP literals as IPs, names by what they resolve to', async () => {
  for (const ip of ['127.0.0.1', '127.0.0.2', '127.255.255.254', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1']) assert.equal(isLoopbackIp(ip), true, ip)
  for (const ip of ['128.0.0.1', '10.0.0.1', '0.0.0.0', '::', '::2', '::ffff:10.0.0.1', '127.0.0.1.nip.io', '127.attacker.example', 'localhost']) assert.equal(isLoopbackIp(ip), false, ip)
  assert.equal(isLoopback('127.attacker.example'), false, 'not a string prefix any more')
  assert.equal(isLoopback('localhost'), true)
  assert.equal(await loopbackProblem('localhost'), undefined)
  assert.equal(await loopbackProblem('127.0.0.2'), undefined)
  assert.match(await loopbackProblem('127.0.0.1.nip.io') ?? '', /is a name that (does not resolve here|resolves to .*, which is not loopback)/)
  assert.match(await loopbackProblem('0.0.0.0') ?? '', /is not loopback/)
})

async function checkAdmin (t: Parameters<typeof tempDir>[0], listen: string, extra = '', command = 'check'): Promise<Awaited<ReturnType<typeof runCli>>> {
  const dir = await tempDir(t)
  const file = join(dir, 'proxy.toml')
  await writeFile(file, `[admin]\nlisten = "${listen}"\n${extra}\n[log]\naccess = "off"\n\n[[listeners]]\nname = "web"\nlisten = "127.0.0.1:0"\n`)
  return command === 'check' ? runCli(['check', '--config', file]) : runCli(['--config', file])
}

test('an admin listen name that is not known to resolve to loopback only needs a token; loopback names and IPs do not', async t => {
  for (const listen of ['127.0.0.1.nip.io:0', '127.attacker.example:0']) {
    const r = await checkAdmin(t, listen)
    assert.equal(r.code, 2, `${listen}: ${r.stdout}`)
    assert.match(r.stderr, new RegExp(`proxy\\.toml:2: admin\\.listen: the admin listener on ${listen.replace(/\./g, '\\.')} is a name that (does not resolve here .*, so it is not known to be loopback|resolves to .*, which is not loopback): set \\[admin\\] token`))
    // The edge itself refuses to start (before any listener binds), not only `check`.
    const run = await checkAdmin(t, listen, '', 'run')
    assert.equal(run.code, 2, run.stderr)
    assert.match(run.stderr, /admin\.listen: .*set \[admin\] token/)
    assert.equal((await checkAdmin(t, listen, 'token = "t0ken"')).code, 0, 'with a token it may be anything')
  }
  for (const listen of ['localhost:0', '127.0.0.2:0', '[::1]:0', '127.0.0.1:0']) {
    const r = await checkAdmin(t, listen)
    assert.equal(r.code, 0, `${listen}: ${r.stderr}`)
  }
  for (const listen of ['10.0.0.1:0', '0.0.0.0:0', '[::]:0', ':0']) {
    const r = await checkAdmin(t, listen)
    assert.equal(r.code, 2, listen)
    assert.match(r.stderr, /admin\.listen: the admin listener on .* is not loopback: set \[admin\] token/)
  }
})

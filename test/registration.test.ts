// Runtime registration, through the real CLI: a member added by POST /api/pools/NAME/backends serves at once,
// outlives a reload that replaces the config's members, is listed with its source, and leaves after a drain that
// lets its in-flight request finish; workers = 2 all use it (and a worker started later gets it); config members
// cannot be deleted (409); bad input is refused with 400 and changes nothing; the token guards it; the
// `edge-proxy backends` command wraps the same calls. The registry itself: one setStatus, subscribers.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { BackendStore } from '../proxy/upstream/store.js'
import type { MemberChange } from '../proxy/upstream/members.js'
import { echoOf, refusedUrl, request, runCli, sleep, spawnCli, startBackend, waitUntil, type CliEdge, type Reply } from './helpers.js'

const poolOf = (urls: readonly string[], extra = '', server = ''): string => `
[server]
shutdown_timeout = "5s"
${server}
[[routes]]
pool = "p"
[pools.p]
backends = [${urls.map(u => `"${u}"`).join(', ')}]
${extra}
`

interface MemberJson { url: string, weight: number, source: string, state: string }

function api (cli: CliEdge, method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<Reply> {
  return request(cli.adminPort, { method, path, headers: { 'content-type': 'application/json', ...headers }, ...(body === undefined ? {} : { body }) })
}

async function list (cli: CliEdge, pool = 'p', headers: Record<string, string> = {}): Promise<MemberJson[]> {
  const r = await api(cli, 'GET', `/api/pools/${pool}/backends`, undefined, headers)
  assert.equal(r.status, 200, r.body)
  return (JSON.parse(r.body) as MemberJson[]).sort((a, b) => a.url.localeCompare(b.url))
}

const del = (cli: CliEdge, url: string, q = ''): Promise<Reply> => api(cli, 'DELETE', `/api/pools/p/backends/${encodeURIComponent(url)}${q}`)

/** Which backends `n` fresh-connection requests reached. */
async function reached (cli: CliEdge, n: number, path = '/'): Promise<Map<string, number>> {
  const seen = new Map<string, number>()
  for (let i = 0; i < n; i++) {
    const name = echoOf(await request(cli.port, { path })).backend
    seen.set(name, (seen.get(name) ?? 0) + 1)
  }
  return seen
}

test('an API member serves at once, survives a reload that replaces the config members, and leaves after a drain', async t => {
  const a = await startBackend(t, 'a')
  const b = await startBackend(t, 'b')
  const c = await startBackend(t, 'c')
  const cli = await spawnCli(t, poolOf([a.url]))

  const added = await api(cli, 'POST', '/api/pools/p/backends', JSON.stringify({ url: b.url, weight: 2 }))
  assert.equal(added.status, 201, added.body)
  assert.deepEqual(JSON.parse(added.body), { url: b.url, weight: 2, source: 'api', state: 'up' })
  // Weighted round robin, weight 2 against 1: b takes two of every three requests.
  assert.deepEqual(Object.fromEntries(await reached(cli, 6)), { a: 2, b: 4 })
  assert.deepEqual(await list(cli), [
    { url: a.url, weight: 1, source: 'config', state: 'up' },
    { url: b.url, weight: 2, source: 'api', state: 'up' },
  ].sort((x, y) => x.url.localeCompare(y.url)))
  const status = JSON.parse((await api(cli, 'GET', '/api/status')).body) as { pools: Array<{ name: string, backends: Array<{ url: string, source: string }> }> }
  assert.deepEqual(status.pools.find(p => p.name === 'p')?.backends.map(x => [x.url, x.source]).sort(), [[a.url, 'config'], [b.url, 'api']].sort())

  // A reload replaces the file's members (a -> c) and keeps the registered one.
  await cli.rewrite(poolOf([c.url]))
  const reload = await api(cli, 'POST', '/api/reload')
  assert.equal(reload.status, 200, reload.body)
  assert.deepEqual((await list(cli)).map(m => [m.url, m.source]), [[b.url, 'api'], [c.url, 'config']].sort((x, y) => (x[0] as string).localeCompare(y[0] as string)))
  const after = await reached(cli, 6)
  assert.equal(after.get('a'), undefined, 'the old config member is gone')
  assert.equal(after.get('b'), 4)
  assert.equal(after.get('c'), 2)

  // The config's member cannot be deleted through the API.
  const refused = await del(cli, c.url)
  assert.equal(refused.status, 409, refused.body)
  assert.match(JSON.parse(refused.body).error, /edit the file and reload/)

  // DELETE drains: requests in flight on b finish, new ones go elsewhere, then b is gone.
  const slow = [0, 1, 2].map(() => request(cli.port, { path: '/?delay=700' }))
  await waitUntil(() => b.inflight > 0, 3000, 'a slow request on b')
  const gone = await del(cli, b.url, '?drain=5s')
  assert.equal(gone.status, 202, gone.body)
  assert.equal((await list(cli)).find(m => m.url === b.url)?.state, 'draining', 'still listed while its request runs')
  assert.deepEqual(Object.keys(Object.fromEntries(await reached(cli, 4))), ['c'], 'no new requests while it drains')
  const slowReplies = await Promise.all(slow)
  for (const r of slowReplies) assert.equal(r.status, 200, r.body)
  assert.ok(slowReplies.some(r => echoOf(r).backend === 'b'), 'an in-flight request on b finished')
  await waitUntil(async () => (await list(cli)).every(m => m.url !== b.url), 3000, 'b to be removed')
  assert.deepEqual((await list(cli)).map(m => m.url), [c.url])
  assert.equal((await del(cli, b.url)).status, 404, 'removed already')
})

test('each bad registration gets 400 and changes nothing; unknown pools and members are told apart', async t => {
  const a = await startBackend(t, 'a')
  const cli = await spawnCli(t, poolOf([a.url]))
  const before = await list(cli)
  const registered = await startBackend(t, 'r')
  assert.equal((await api(cli, 'POST', '/api/pools/p/backends', JSON.stringify({ url: registered.url }))).status, 201)
  const now = await list(cli)
  assert.equal(now.length, before.length + 1)
  const bad: Array<[string, string, RegExp]> = [
    ['not JSON', '{"url": ', /not JSON/],
    ['an array', '[]', /JSON object/],
    ['no url', '{"weight": 2}', /"url" is required/],
    ['url not a string', '{"url": 9003}', /"url" is required/],
    ['not a URL', '{"url": "127.0.0.1:9003"}', /backend URLs are|not a URL/],
    ['a scheme the pool cannot use', '{"url": "ftp://127.0.0.1:9003"}', /backend URLs are http/],
    ['a path', '{"url": "http://127.0.0.1:9003/api"}', /no path/],
    ['tcp:// in an HTTP pool', '{"url": "tcp://127.0.0.1:9003"}', /HTTP pool/],
    ['weight 0', '{"url": "http://127.0.0.1:9003", "weight": 0}', /integer from 1 to 1000/],
    ['weight 1001', '{"url": "http://127.0.0.1:9003", "weight": 1001}', /integer from 1 to 1000/],
    ['weight 1.5', '{"url": "http://127.0.0.1:9003", "weight": 1.5}', /integer from 1 to 1000/],
    ['weight as text', '{"url": "http://127.0.0.1:9003", "weight": "2"}', /integer from 1 to 1000/],
    ['an unknown field', '{"url": "http://127.0.0.1:9003", "wieght": 2}', /unknown field "wieght"/],
    ['a duplicate of a config member', JSON.stringify({ url: `${a.url}/` }), /already in pool "p" \(from the config file\)/],
    ['a duplicate of an API member', JSON.stringify({ url: registered.url }), /already in pool "p" \(registered through the API\)/],
  ]
  for (const [what, body, message] of bad) {
    const r = await api(cli, 'POST', '/api/pools/p/backends', body)
    assert.equal(r.status, 400, `${what}: ${r.body}`)
    assert.match(JSON.parse(r.body).error, message, what)
  }
  const unknownPool = await api(cli, 'POST', '/api/pools/nope/backends', '{"url": "http://127.0.0.1:9003"}')
  assert.equal(unknownPool.status, 400, unknownPool.body)
  assert.match(JSON.parse(unknownPool.body).error, /no pool named "nope"/)
  assert.deepEqual(await list(cli), now, 'nothing changed')
  assert.equal((await api(cli, 'GET', '/api/pools/nope/backends')).status, 404)
  assert.equal((await api(cli, 'DELETE', `/api/pools/nope/backends/${encodeURIComponent(a.url)}`)).status, 404)
  assert.equal((await del(cli, 'http://127.0.0.1:1')).status, 404, 'not a member')
  const badDrain = await del(cli, registered.url, '?drain=soon')
  assert.equal(badDrain.status, 400, badDrain.body)
  assert.deepEqual(await list(cli), now, 'nothing changed')
  assert.equal((await api(cli, 'PUT', '/api/pools/p/backends', '{}')).status, 405)
})

test('a registered member of a health-checked pool takes traffic once its check passes; a dead one never', async t => {
  const a = await startBackend(t, 'a')
  const b = await startBackend(t, 'b')
  const dead = await refusedUrl()
  const cli = await spawnCli(t, poolOf([a.url], '[pools.p.health]\ntype = "http"\npath = "/"\ninterval = "300ms"\ntimeout = "200ms"\n'))
  const r = await api(cli, 'POST', '/api/pools/p/backends', JSON.stringify({ url: b.url }))
  assert.equal(r.status, 201, r.body)
  assert.equal((JSON.parse(r.body) as MemberJson).state, 'down', 'waits for its first check')
  assert.equal((await api(cli, 'POST', '/api/pools/p/backends', JSON.stringify({ url: dead }))).status, 201)
  await waitUntil(async () => (await list(cli)).find(m => m.url === b.url)?.state === 'up', 5000, 'b to pass its check')
  const seen = await reached(cli, 8)
  assert.equal(seen.get('b'), 4)
  assert.equal(seen.get('a'), 4, 'the dead member takes nothing')
  assert.equal((await list(cli)).find(m => m.url === dead)?.state, 'down')
  assert.ok(b.seen.some(s => s.url === '/'), 'the health check probed the registered member')
})

test('workers = 2: every worker uses a registered member, a worker started later too; removal reaches them all', async t => {
  const a = await startBackend(t, 'a')
  const b = await startBackend(t, 'b')
  const cli = await spawnCli(t, poolOf([a.url], '', 'workers = 2'), { listeningCount: 2 })
  const workers = (): number[] => cli.events.filter(e => e.msg === 'listening').map(e => Number(e.pid))
  assert.equal((await api(cli, 'POST', '/api/pools/p/backends', JSON.stringify({ url: b.url }))).status, 201)
  /** pid -> backends it sent requests to (request ids carry the serving pid, base 36). */
  const byWorker = async (n: number): Promise<Map<number, Set<string>>> => {
    const out = new Map<number, Set<string>>()
    for (let i = 0; i < n; i++) {
      const r = await request(cli.port)
      const pid = parseInt(String(r.headers['x-request-id']).split('-')[1] ?? '', 36)
      const set = out.get(pid) ?? new Set<string>()
      set.add(echoOf(r).backend)
      out.set(pid, set)
    }
    return out
  }
  const usesB = async (pids: readonly number[]): Promise<void> => {
    // Fresh connections spread over the workers; each worker alternates a and b.
    await waitUntil(async () => {
      const seen = await byWorker(12)
      return pids.every(pid => seen.get(pid)?.has('b') === true)
    }, 8000, `workers ${pids.join(', ')} to use b`)
  }
  await usesB(workers())
  assert.deepEqual((await list(cli)).map(m => [m.url, m.source]).sort(), [[a.url, 'config'], [b.url, 'api']].sort())

  // A worker started after the registration gets it from the primary.
  const victim = workers()[0] as number
  process.kill(victim, 'SIGKILL')
  await waitUntil(() => workers().length === 3, 10_000, 'a replacement worker')
  const live = workers().filter(p => p !== victim)
  await sleep(100)
  await usesB(live)

  assert.equal((await del(cli, b.url, '?drain=0')).status, 202)
  await waitUntil(async () => (await list(cli)).length === 1, 3000, 'b removed in every worker')
  const seen = await byWorker(10)
  for (const backends of seen.values()) assert.deepEqual([...backends], ['a'])
})

test('with [admin] token the registration calls need it', async t => {
  const a = await startBackend(t, 'a')
  const b = await startBackend(t, 'b')
  const cli = await spawnCli(t, poolOf([a.url]), { admin: 'token = "reg-s3cret-token"' })
  const auth = { authorization: 'Bearer reg-s3cret-token' }
  const body = JSON.stringify({ url: b.url })
  assert.equal((await api(cli, 'POST', '/api/pools/p/backends', body)).status, 401)
  assert.equal((await api(cli, 'GET', '/api/pools/p/backends')).status, 401)
  assert.equal((await api(cli, 'DELETE', `/api/pools/p/backends/${encodeURIComponent(a.url)}`)).status, 401)
  // The cross-origin guard applies before the token, as for every state-changing call.
  assert.equal((await api(cli, 'POST', '/api/pools/p/backends', body, { ...auth, origin: 'http://evil.test' })).status, 403)
  assert.equal((await list(cli, 'p', auth)).length, 1, 'nothing changed')
  assert.equal((await api(cli, 'POST', '/api/pools/p/backends', body, auth)).status, 201)
  assert.equal((await list(cli, 'p', auth)).length, 2)
})

test('edge-proxy backends add|list|remove against a running edge; refusals exit 1, usage errors 2', async t => {
  const a = await startBackend(t, 'a')
  const b = await startBackend(t, 'b')
  const cli = await spawnCli(t, poolOf([a.url]), { admin: 'token = "cli-s3cret-token"' })
  const admin = ['--admin', `127.0.0.1:${cli.adminPort}`, '--token', 'cli-s3cret-token']
  const add = await runCli(['backends', 'add', ...admin, '--weight', '3', 'p', b.url])
  assert.equal(add.code, 0, add.stderr)
  assert.match(add.stdout, new RegExp(`added ${b.url} to pool p \\(weight 3, up\\)`))
  assert.deepEqual(Object.fromEntries(await reached(cli, 4)), { a: 1, b: 3 })
  const ls = await runCli(['backends', 'list', ...admin, 'p'])
  assert.equal(ls.code, 0, ls.stderr)
  assert.match(ls.stdout, /URL\s+WEIGHT\s+SOURCE\s+STATE/)
  assert.match(ls.stdout, new RegExp(`${a.url}\\s+1\\s+config\\s+up`))
  assert.match(ls.stdout, new RegExp(`${b.url}\\s+3\\s+api\\s+up`))

  const config = await runCli(['backends', 'remove', ...admin, 'p', a.url])
  assert.equal(config.code, 1)
  assert.match(config.stderr, /409: .*edit the file and reload/)
  const dup = await runCli(['backends', 'add', ...admin, 'p', b.url])
  assert.equal(dup.code, 1)
  assert.match(dup.stderr, /400: .*already in pool/)
  const noToken = await runCli(['backends', 'list', '--admin', `127.0.0.1:${cli.adminPort}`, 'p'])
  assert.equal(noToken.code, 1)
  assert.match(noToken.stderr, /401/)
  for (const args of [['frobnicate', 'p'], ['add', 'p'], ['list'], ['add', '--weight', 'x', 'p', b.url], ['remove', '--drain', 'soon', 'p', b.url], ['list', '--bogus', 'p']]) {
    const r = await runCli(['backends', ...admin, ...args])
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
    assert.match(r.stderr, /Usage: edge-proxy backends/)
  }

  const rm = await runCli(['backends', 'remove', ...admin, '--drain', '2s', 'p', b.url])
  assert.equal(rm.code, 0, rm.stderr)
  assert.match(rm.stdout, /draining .* removed when its in-flight requests finish/)
  await waitUntil(async () => !(await runCli(['backends', 'list', ...admin, 'p'])).stdout.includes(b.url), 5000, 'b to be removed')
  const help = await runCli(['--help'])
  assert.match(help.stdout, /edge-proxy backends add\|remove\|list/)
})

test('the member registry: setStatus is the one write, subscribers hear adds, removes and state changes', async t => {
  const store = new BackendStore({ connectTimeout: 1000, keepAliveTimeout: 1000, maxHeaderSize: 16384 })
  t.after(() => store.close())
  const reg = store.members
  const heard: string[] = []
  const off = reg.subscribe((c: MemberChange) => { heard.push(`${c.kind} ${c.pool} ${c.member.backend.url}${c.kind === 'status' ? ` ${JSON.stringify(c.patch)}` : ''}`) })
  reg.subscribe(() => { throw new Error('a broken observer') })
  const v0 = reg.version
  const m = reg.add('p', { url: 'http://127.0.0.1:1', weight: 2, source: 'api' })
  assert.equal(reg.version, v0 + 1)
  assert.equal(reg.add('p', { url: 'http://127.0.0.1:1', weight: 3, source: 'api' }), m, 'the same member, updated')
  assert.equal(m.weight, 3)
  assert.equal(reg.version, v0 + 1, 'an update is not a membership change')
  assert.ok(reg.setStatus('p', 'http://127.0.0.1:1', { draining: true, ejectedUntil: 5 }))
  assert.equal(m.draining, true)
  assert.equal(m.ejectedUntil, 5)
  assert.equal(reg.version, v0 + 1, 'state changes do not rebuild pools')
  assert.equal(reg.setStatus('p', 'http://127.0.0.1:2', { healthy: false }), false)
  // The file takes over a member another source added; a reload's removal touches only the file's members.
  reg.add('p', { url: 'http://127.0.0.1:1', weight: 1, source: 'config' })
  assert.equal(m.source, 'config')
  reg.add('p', { url: 'http://127.0.0.1:3', weight: 1, source: 'api' })
  assert.equal(reg.remove('p', 'http://127.0.0.1:3', 'config'), false)
  assert.ok(reg.remove('p', 'http://127.0.0.1:3'))
  off()
  reg.remove('p', 'http://127.0.0.1:1')
  assert.deepEqual(heard, [
    'added p http://127.0.0.1:1',
    'status p http://127.0.0.1:1 {"draining":true,"ejectedUntil":5}',
    'added p http://127.0.0.1:3',
    'removed p http://127.0.0.1:3',
  ])
})

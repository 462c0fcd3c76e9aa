// Health, outlier ejection, retries, the retry budget and in-flight limits, end to end through a real edge:
// backends on real sockets, the edge started from TOML with health checks wired as the CLI wires them.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { backend, client, head, parsePrometheus, startEdge, sum, until, type TestBackend } from './edge-util.js'
import { refusedUrl } from './helpers.js'
import type { Member } from '../proxy/upstream/member.js'
import type { TestEdge } from './edge-util.js'

function member (te: TestEdge, pool: string, b: TestBackend): Member {
  const m = te.edge.store.findMember(pool, b.url)
  assert.ok(m !== undefined, `member ${b.url} of pool ${pool}`)
  return m
}

function route (pool: string): string {
  return `
[[routes]]
match = { path_prefix = "/${pool}" }
pool = "${pool}"
`
}

const INTERVAL = 100
const FALL = 3
const RISE = 2
const SLOW_START = 2000

test('a failing backend leaves the pool within fall x interval, returns after rise passes, and ramps up under slow start', async t => {
  const a = await backend(t)
  const b = await backend(t)
  const solo = await backend(t)
  const te = await startEdge(t, `${head()}
${route('api')}
${route('solo')}
[pools.api]
backends = ["${a.url}", "${b.url}"]
[pools.api.health]
path = "/healthz"
interval = "${INTERVAL}ms"
timeout = "50ms"
expect = "200-399"
rise = ${RISE}
fall = ${FALL}
slow_start = "${SLOW_START}ms"

[pools.solo]
backends = ["${solo.url}"]
[pools.solo.health]
path = "/healthz"
interval = "${INTERVAL}ms"
timeout = "50ms"
fall = 1
`)
  const get = client(t)
  const ma = member(te, 'api', a)
  await until(() => a.checks >= 1 && b.checks >= 1, 2000, 'first checks')

  // Down: fall consecutive failures, each an interval (+-10% jitter) apart.
  a.healthStatus = 503
  const downMs = await until(() => !ma.healthy, 3000, 'a marked unhealthy')
  assert.ok(downMs >= (FALL - 1) * INTERVAL * 0.9, `down after ${downMs} ms: sooner than ${FALL} checks allow`)
  assert.ok(downMs <= FALL * INTERVAL * 1.1 + INTERVAL + 300, `down after ${downMs} ms: later than fall x interval + slack`)
  const hitsA = a.hits
  for (let i = 0; i < 20; i++) assert.equal((await get(`${te.url}/api/x`)).status, 200)
  assert.equal(a.hits, hitsA, 'an unhealthy backend gets no requests')
  const down = te.events.recent().find(e => e.type === 'unhealthy' && e.backend === a.url)
  assert.ok(down !== undefined, 'the health change is an event')
  assert.match(down.message, /HTTP 503 \(expected 200-399\), 3 consecutive failures/)

  // Up again after rise passes; then slow start: right after recovery it gets about 10% of b's share.
  a.healthStatus = 200
  const upMs = await until(() => ma.healthy, 3000, 'a healthy again')
  assert.ok(upMs >= (RISE - 1) * INTERVAL * 0.9, `up after ${upMs} ms: sooner than ${RISE} passes allow`)
  assert.ok(upMs <= RISE * INTERVAL * 1.1 + INTERVAL + 300, `up after ${upMs} ms`)
  assert.ok(ma.recoveredAt > 0)
  let early = a.hits
  for (let i = 0; i < 30; i++) await get(`${te.url}/api/x`)
  early = a.hits - early
  assert.ok(Date.now() - ma.recoveredAt < SLOW_START / 2, 'the early window ran inside the first half of slow start')
  assert.ok(early >= 1 && early <= 7, `right after recovery a took ${early} of 30 requests (expected a small share)`)
  await sleep(Math.max(0, ma.recoveredAt + SLOW_START + 50 - Date.now()))
  let late = a.hits
  for (let i = 0; i < 30; i++) await get(`${te.url}/api/x`)
  late = a.hits - late
  assert.ok(late >= 14 && late <= 16, `after slow start a took ${late} of 30 requests (expected half)`)
  assert.ok(te.events.recent().some(e => e.type === 'healthy' && e.backend === a.url && e.from === 'down'))

  // No healthy backend at all: a 503 that says so.
  solo.healthStatus = 500
  await until(() => !member(te, 'solo', solo).healthy, 3000, 'solo unhealthy')
  const r = await get(`${te.url}/solo/x`)
  assert.equal(r.status, 503)
  assert.match(r.body, /^503 no live backend in pool "solo"\ncode: EP_ERR_NO_HEALTHY_BACKEND\nrequest-id: /)
  assert.equal(solo.hits, 0)
})

test('outlier ejection after consecutive 5xx, capped by max_ejected_percent', async t => {
  const bad = await backend(t, (_req, res) => { res.statusCode = 500; res.end('broken') })
  const good = await backend(t)
  const bads = [await backend(t, (_q, s) => { s.statusCode = 500; s.end() }), await backend(t, (_q, s) => { s.statusCode = 502; s.end() }), await backend(t, (_q, s) => { s.statusCode = 503; s.end() })]
  const good2 = await backend(t)
  const te = await startEdge(t, `${head()}
${route('flaky')}
${route('capped')}
[pools.flaky]
backends = ["${bad.url}", "${good.url}"]
[pools.flaky.outlier]
consecutive_failures = 3
base_ejection = "5s"
max_ejected_percent = 50

[pools.capped]
backends = [${bads.map(b => `"${b.url}"`).join(', ')}, "${good2.url}"]
[pools.capped.outlier]
consecutive_failures = 2
base_ejection = "5s"
max_ejected_percent = 50
`)
  const get = client(t)
  const statuses: number[] = []
  for (let i = 0; i < 12; i++) statuses.push((await get(`${te.url}/flaky/x`)).status)
  assert.equal(bad.hits, 3, 'ejected after its third consecutive 500')
  assert.deepEqual(statuses, [500, 200, 500, 200, 500, 200, 200, 200, 200, 200, 200, 200])
  assert.ok(member(te, 'flaky', bad).ejectedUntil > Date.now() + 4000)
  const ejected = te.events.recent().find(e => e.type === 'ejected')
  assert.ok(ejected !== undefined)
  assert.equal(ejected.backend, bad.url)
  const metrics = parsePrometheus(await te.edge.metrics.text()).samples
  assert.equal(sum(metrics, 'edge_ejections_total', { pool: 'flaky', backend: bad.url }), 1)
  assert.equal(sum(metrics, 'edge_backend_up', { pool: 'flaky', backend: bad.url }), 0)

  // Three of four failing, cap 50%: two are ejected, the third keeps serving (and failing).
  for (let i = 0; i < 24; i++) await get(`${te.url}/capped/x`)
  const now = Date.now()
  const out = bads.filter(b => member(te, 'capped', b).ejectedUntil > now)
  assert.equal(out.length, 2, 'max_ejected_percent = 50 of 4 backends ejects at most 2')
  const kept = bads.find(b => member(te, 'capped', b).ejectedUntil <= now) as TestBackend
  const before = kept.hits
  for (let i = 0; i < 10; i++) await get(`${te.url}/capped/x`)
  assert.equal(kept.hits - before, 5, 'the failing backend over the cap still takes its share')
  assert.ok(te.events.recent().some(e => e.type === 'ejection-held' && e.backend === kept.url))
})

test('retries: a refused GET goes to another backend; a retryable 503 too; a POST whose body was sent never', async t => {
  const good = await backend(t)
  const dead1 = await refusedUrl()
  const dead2 = await refusedUrl()
  const dead3 = await refusedUrl()
  const unavailable = await backend(t, (_q, s) => { s.statusCode = 503; s.end('busy') })
  const fine = await backend(t)
  const unavailable2 = await backend(t, (_q, s) => { s.statusCode = 503; s.end('busy') })
  const fine2 = await backend(t)
  const lone503 = await backend(t, (_q, s) => { s.statusCode = 503; s.end('lone and busy') })
  const bodies: string[] = []
  const readsThen502 = await backend(t, (req, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (c: string) => { body += c })
    req.on('end', () => { bodies.push(body); res.statusCode = 502; res.end('bad gateway behind') })
  })
  const other = await backend(t, (req, res) => { req.resume(); req.on('end', () => { res.end('other') }) })
  const te = await startEdge(t, `${head()}
${route('refuse')}
${route('noretry')}
${route('prefused')}
${route('r503')}
${route('no503')}
${route('post')}
${route('lone')}
[pools.lone]
backends = ["${lone503.url}"]
[pools.lone.retry]
on = ["503"]

[pools.refuse]
backends = ["${dead1}", "${good.url}"]
[pools.refuse.retry]
attempts = 2
on = ["connect-failure"]

[pools.prefused]
backends = ["${dead3}", "${good.url}"]

[pools.noretry]
backends = ["${dead2}", "${good.url}"]
[pools.noretry.retry]
attempts = 0

[pools.r503]
backends = ["${unavailable.url}", "${fine.url}"]
[pools.r503.retry]
attempts = 2
on = ["connect-failure", "502", "503", "504"]
budget = 0.2
per_try_timeout = "2s"

[pools.no503]
backends = ["${unavailable2.url}", "${fine2.url}"]
[pools.no503.retry]
on = ["connect-failure"]

[pools.post]
backends = ["${readsThen502.url}", "${other.url}"]
[pools.post.retry]
attempts = 2
on = ["connect-failure", "502"]
`)
  const get = client(t)
  // Round robin with equal weights starts at the first backend listed, so the first try goes where we want it.
  let r = await get(`${te.url}/refuse/x`)
  assert.equal(r.status, 200)
  assert.equal(r.body, `hello from ${good.port}`)
  // A POST whose connection was refused sent nothing, so it may go elsewhere, body and all.
  const posted: string[] = []
  good.server.prependListener('request', (req: import('node:http').IncomingMessage) => {
    let body = ''
    req.on('data', (c: Buffer) => { body += c.toString() })
    req.on('end', () => { if (req.method === 'POST') posted.push(body) })
  })
  r = await get(`${te.url}/prefused/x`, { method: 'POST', body: 'first-post-body' })
  assert.equal(r.status, 200)
  assert.deepEqual(posted, ['first-post-body'])
  r = await get(`${te.url}/noretry/x`)
  assert.equal(r.status, 502, 'attempts = 0: the refusal is the answer')
  assert.match(r.body, /code: EP_ERR_UPSTREAM_CONNECT/)

  r = await get(`${te.url}/r503/x`)
  assert.equal(r.status, 200)
  assert.deepEqual([unavailable.hits, fine.hits], [1, 1])
  r = await get(`${te.url}/no503/x`)
  assert.equal(r.status, 503, '"503" not in retry.on: the backend\'s 503 is passed on')
  assert.equal(r.body, 'busy')
  assert.deepEqual([unavailable2.hits, fine2.hits], [1, 0])
  // Regression: with no other backend to retry on, the backend's own 503 is the answer (not "no live backend").
  r = await get(`${te.url}/lone/x`)
  assert.equal(r.status, 503)
  assert.equal(r.body, 'lone and busy')
  assert.equal(lone503.hits, 1)

  r = await get(`${te.url}/post/x`, { method: 'POST', body: 'payload-1' })
  assert.equal(r.status, 502)
  assert.equal(r.body, 'bad gateway behind', 'the backend\'s own 502 reaches the client')
  assert.deepEqual([readsThen502.hits, other.hits], [1, 0], 'a POST whose body was sent reaches one backend only')
  assert.deepEqual(bodies, ['payload-1'])
  // The same pool retries a GET's 502 (so the POST was held back by its method and body, not by config).
  const both = [await get(`${te.url}/post/y`), await get(`${te.url}/post/z`)]
  assert.deepEqual(both.map(x => x.status), [200, 200])
  assert.equal(readsThen502.hits, 2)

  const metrics = parsePrometheus(await te.edge.metrics.text()).samples
  assert.equal(sum(metrics, 'edge_retries_total', { pool: 'refuse' }), 1)
  assert.equal(sum(metrics, 'edge_retries_total', { pool: 'prefused' }), 1)
  assert.equal(sum(metrics, 'edge_retries_total', { pool: 'r503' }), 1)
  assert.equal(sum(metrics, 'edge_retries_total', { pool: 'post' }), 1)
  assert.equal(sum(metrics, 'edge_retries_total', { pool: 'no503' }), 0)
  assert.equal(sum(metrics, 'edge_retries_total', { pool: 'lone' }), 0)
})

test('per_try_timeout gives up on a slow backend and retries elsewhere', async t => {
  const slow = await backend(t, (_q, s) => { setTimeout(() => { s.end('late') }, 1500) })
  const fast = await backend(t)
  const te = await startEdge(t, `${head()}
${route('pt')}
[pools.pt]
backends = ["${slow.url}", "${fast.url}"]
[pools.pt.retry]
on = ["timeout"]
per_try_timeout = "200ms"
`)
  const get = client(t)
  const start = Date.now()
  const r = await get(`${te.url}/pt/x`)
  const took = Date.now() - start
  assert.equal(r.status, 200)
  assert.equal(r.body, `hello from ${fast.port}`)
  assert.ok(took >= 180 && took < 1200, `answered in ${took} ms`)
  assert.equal(slow.hits, 1)
})

test('the retry budget holds under a full outage: attempts stay near requests x 1.2, not x 3', async t => {
  const dead = await Promise.all([0, 1, 2].map(() => backend(t, (_q, s) => { s.writeHead(503, { connection: 'close' }); s.end('down') })))
  const te = await startEdge(t, `${head()}
${route('dead')}
[pools.dead]
backends = [${dead.map(b => `"${b.url}"`).join(', ')}]
[pools.dead.outlier]
consecutive_failures = 0
[pools.dead.retry]
attempts = 2
on = ["connect-failure", "502", "503", "504"]
budget = 0.2
`)
  const get = client(t)
  const N = 150
  const start = Date.now()
  let next = 0
  const statuses: number[] = []
  await Promise.all([0, 1, 2, 3, 4].map(async () => {
    while (next < N) { next++; statuses.push((await get(`${te.url}/dead/x`)).status) }
  }))
  const seconds = Math.ceil((Date.now() - start) / 1000)
  const attempts = dead.reduce((n, b) => n + b.hits, 0)
  const connections = dead.reduce((n, b) => n + b.connections, 0)
  assert.equal(statuses.length, N)
  assert.ok(statuses.every(s => s === 503))
  // budget 0.2 of the requests, plus the per-second minimum of 3 (the window spans the whole run).
  const ceiling = N * 1.2 + 3 * (seconds + 1)
  assert.ok(attempts > N, `some retries were granted (${attempts} attempts)`)
  assert.ok(attempts <= ceiling, `${attempts} attempts for ${N} requests over ${seconds} s (ceiling ${ceiling}; x3 would be ${3 * N})`)
  assert.equal(connections, attempts, 'every attempt was its own connection')
  const metrics = parsePrometheus(await te.edge.metrics.text()).samples
  assert.equal(sum(metrics, 'edge_retries_total', { pool: 'dead' }), attempts - N)
})

test('503 overloaded at the in-flight limit', async t => {
  const slow = await backend(t, (_q, s) => { setTimeout(() => { s.end('slow') }, 300) })
  const te = await startEdge(t, `${head()}
${route('lim')}
[pools.lim]
backends = ["${slow.url}"]
[pools.lim.limits]
max_inflight_per_backend = 1
`)
  const get = client(t)
  const answers = await Promise.all([get(`${te.url}/lim/a`), get(`${te.url}/lim/b`)])
  const statuses = answers.map(a => a.status).sort()
  assert.deepEqual(statuses, [200, 503])
  const refused = answers.find(a => a.status === 503) as { body: string }
  assert.match(refused.body, /code: EP_ERR_OVERLOADED/)
  assert.match(refused.body, /in-flight limit/)
  assert.equal(slow.hits, 1)
  // The limit frees up as the request finishes.
  assert.equal((await get(`${te.url}/lim/c`)).status, 200)
})

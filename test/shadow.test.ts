// Shadow traffic end to end ([pools.NAME.shadow], proxy/mirror/): real primary and shadow backends on loopback.
// The client gets the primary's answer unchanged and no later; the shadow copy carries X-Shadow: 1; only listed
// methods and bodies up to max_body are copied; a dead shadow fills max_inflight and the rest is dropped and
// counted; requests the edge refused itself are not copied; differences are found per endpoint and field, and
// fields random on both primary and secondary count as noise.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { TestContext } from 'node:test'
import { backend, client, head, parsePrometheus, startEdge, sum, until, type TestBackend } from './edge-util.js'
import { refusedUrl } from './helpers.js'

function readAll (req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => { resolve(Buffer.concat(chunks)) })
    req.on('error', reject)
  })
}

async function storeDir (t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'edge-shadow-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

interface Rec { endpoint: string, differs: boolean, diffs: { field: string, primary: unknown, shadow: unknown }[], noise?: string[], request: { method: string, path: string, body_bytes: number }, primary: { status: number }, shadow: { status: number, error?: string } }

async function records (dir: string): Promise<Rec[]> {
  const out: Rec[] = []
  for (const f of await readdir(dir)) {
    for (const line of (await readFile(join(dir, f), 'utf8')).split('\n')) if (line !== '') out.push(JSON.parse(line) as Rec)
  }
  return out
}

/** A JSON API: /users/N -> {id, name, generated_at}; the `variant` changes what the shadow says. */
function api (variant: { nameOf?: (id: string) => string, random?: boolean, seen?: IncomingMessage[] } = {}) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    variant.seen?.push(req)
    void readAll(req).then(body => {
      const url = req.url ?? '/'
      const id = /^\/users\/(\d+)/.exec(url)?.[1]
      let doc: unknown
      if (id !== undefined) doc = { id: Number(id), name: variant.nameOf?.(id) ?? `user ${id}`, generated_at: Date.now() + Math.random(), ...(variant.random === true ? { nonce: Math.random() } : {}) }
      else if (url.startsWith('/orders/')) doc = { items: [{ sku: 'a', etag: Math.random() }, { sku: 'b', etag: Math.random() }] }
      else doc = { echo: body.toString('utf8'), method: req.method }
      const text = JSON.stringify(doc)
      res.writeHead(200, { 'content-type': 'application/json', date: new Date(Date.now() + Math.floor(Math.random() * 1e6)).toUTCString() })
      res.end(text)
    })
  }
}

function shadowToml (primary: TestBackend[], shadow: string, extra: string): string {
  return `${head()}
[[routes]]
match.path_prefix = "/"
pool = "api"
[pools.api]
backends = [${primary.map(b => `"${b.url}"`).join(', ')}]
[pools.api-remote1]
backends = ["${shadow}"]
[pools.api.shadow]
pool = "api-remote1"
ignore_headers = ["date"]
ignore_json = ["$.generated_at", "$.items[*].etag"]
endpoints = ["/users/:id", "/orders/:id/items"]
${extra}
`
}

async function metrics (te: { edge: { metrics: { text (): Promise<string> } } }): Promise<ReturnType<typeof parsePrometheus>['samples']> {
  return parsePrometheus(await te.edge.metrics.text()).samples
}

test('identical primary and shadow: the client gets the primary answer, the copy carries X-Shadow: 1, no differences', async t => {
  const seen: IncomingMessage[] = []
  const primary = await backend(t, api())
  const shadow = await backend(t, api({ seen }))
  const dir = await storeDir(t)
  const te = await startEdge(t, shadowToml([primary], shadow.url, `store = "${dir}"`))
  const get = client(t)
  for (let i = 1; i <= 10; i++) {
    const r = await get(`${te.url}/users/${i}?x=1`, { headers: { 'x-user': `u${i}` } })
    assert.equal(r.status, 200)
    assert.equal((JSON.parse(r.body) as { name: string }).name, `user ${i}`)
    assert.equal(r.headers['x-shadow'], undefined)
  }
  await until(() => shadow.hits === 10, 3000, 'ten copies at the shadow')
  assert.equal(primary.hits, 10)
  for (const q of seen) {
    assert.equal(q.headers['x-shadow'], '1')
    assert.equal(String(q.headers['x-user']).startsWith('u'), true, 'the copy carries the client\'s headers')
  }
  assert.equal(seen[0]?.url, '/users/1?x=1')
  await until(() => te.edge.mirror.summary().pools[0]?.endpoints[0]?.compared === 10, 3000, 'ten comparisons')
  await te.edge.mirror.flush()
  const recs = await records(dir)
  assert.equal(recs.length, 10)
  for (const r of recs) {
    assert.equal(r.endpoint, 'GET /users/:id')
    assert.deepEqual(r.diffs, [], JSON.stringify(r.diffs))
    assert.equal(r.differs, false)
  }
  const s = await metrics(te)
  assert.equal(sum(s, 'edge_shadow_mirrored_total', { pool: 'api' }), 10)
  assert.equal(sum(s, 'edge_shadow_compared_total', { pool: 'api', endpoint: 'GET /users/:id' }), 10)
  assert.equal(sum(s, 'edge_shadow_differing_total', { pool: 'api' }), 0)
  const summary = te.edge.mirror.summary().pools[0]
  const viaApi = JSON.parse((await get(`${te.adminUrl}/api/shadow`)).body) as ReturnType<typeof te.edge.mirror.summary>
  assert.deepEqual(viaApi.pools[0]?.endpoints.map(e => [e.endpoint, e.compared, e.differing]), [['GET /users/:id', 10, 0]], 'GET /api/shadow: per pool and endpoint')
  assert.equal(viaApi.pools[0]?.mirrored, 10)
  const st = JSON.parse((await get(`${te.adminUrl}/api/status`)).body) as { shadow?: unknown }
  assert.ok(st.shadow !== undefined, '/api/status has the shadow part for the status page')
  assert.equal(summary?.shadow_pool, 'api-remote1')
  assert.equal(summary?.endpoints[0]?.differing_rate, 0)
  assert.ok(summary?.endpoints[0]?.shadow_ms !== undefined && summary.endpoints[0].primary_ms !== undefined)
})

test('a shadow that changes one field on one endpoint: that endpoint and field are reported, the others clean', async t => {
  const primary = await backend(t, api())
  const shadow = await backend(t, api({ nameOf: id => `User ${id}` }))
  const dir = await storeDir(t)
  const te = await startEdge(t, shadowToml([primary], shadow.url, `store = "${dir}"`))
  const get = client(t)
  for (let i = 1; i <= 8; i++) {
    assert.equal((await get(`${te.url}/users/${i}`)).status, 200)
    assert.equal((await get(`${te.url}/orders/${i}/items`)).status, 200)
  }
  await until(() => (te.edge.mirror.summary().pools[0]?.endpoints.reduce((n, e) => n + e.compared, 0) ?? 0) === 16, 3000, '16 comparisons')
  const eps = new Map(te.edge.mirror.summary().pools[0]?.endpoints.map(e => [e.endpoint, e]))
  const users = eps.get('GET /users/:id')
  const orders = eps.get('GET /orders/:id/items')
  assert.equal(users?.differing, 8)
  assert.deepEqual(users?.fields.map(f => f.field), ['$.name'])
  assert.equal(orders?.differing, 0, 'the random etags are ignored by ignore_json $.items[*].etag')
  assert.deepEqual(orders?.fields, [])
  await te.edge.mirror.flush()
  const diff = (await records(dir)).find(r => r.endpoint === 'GET /users/:id')
  assert.deepEqual(diff?.diffs, [{ field: '$.name', primary: 'user 1', shadow: 'User 1' }])
  const s = await metrics(te)
  assert.equal(sum(s, 'edge_shadow_differing_total', { pool: 'api', endpoint: 'GET /users/:id' }), 8)
  assert.equal(sum(s, 'edge_shadow_differing_total', { pool: 'api', endpoint: 'GET /orders/:id/items' }), 0)
})

test('secondary = true: a field random on primary and secondary alike is noise, a real change is still a difference', async t => {
  const p1 = await backend(t, api({ random: true }))
  const p2 = await backend(t, api({ random: true }))
  const shadow = await backend(t, api({ random: true, nameOf: id => id === '3' ? 'changed' : `user ${id}` }))
  const te = await startEdge(t, shadowToml([p1, p2], shadow.url, 'secondary = true'))
  const get = client(t)
  for (let i = 0; i < 30; i++) assert.equal((await get(`${te.url}/users/${i % 5}`)).status, 200)
  await until(() => te.edge.mirror.summary().pools[0]?.endpoints[0]?.compared === 30, 3000, '30 comparisons')
  // Every request went to the primary once and to the secondary once: 60 hits over p1 and p2.
  await until(() => p1.hits + p2.hits === 60, 3000, 'primary and secondary copies')
  const e = te.edge.mirror.summary().pools[0]?.endpoints[0]
  const fields = new Map(e?.fields.map(f => [f.field, f]))
  assert.equal(fields.get('$.nonce')?.noise, true, JSON.stringify(e?.fields))
  assert.equal(fields.get('$.nonce')?.rate, 1)
  assert.equal(fields.get('$.nonce')?.noise_rate, 1)
  assert.equal(fields.get('$.name')?.noise, false, 'a field that differs only against the shadow is a difference')
  assert.equal(e?.differing, 6, 'only the six requests for /users/3 differ')
})

test('POST is not mirrored by default; listed, its body is teed; over max_body it is skipped and counted', async t => {
  const seen: IncomingMessage[] = []
  const bodies: string[] = []
  const primary = await backend(t, api())
  const shadow = await backend(t, (req, res) => { seen.push(req); void readAll(req).then(b => { bodies.push(b.toString()); api()(req, res) }) })
  const dflt = await startEdge(t, shadowToml([primary], shadow.url, ''))
  const post = client(t)
  const r = await post(`${dflt.url}/things`, { method: 'POST', body: 'hello' })
  assert.equal(r.status, 200)
  assert.equal((JSON.parse(r.body) as { echo: string }).echo, 'hello')
  assert.equal(sum(await metrics(dflt), 'edge_shadow_skipped_total', { pool: 'api', reason: 'method' }), 1)
  await new Promise(resolve => setTimeout(resolve, 100))
  assert.equal(shadow.hits, 0, 'POST was not copied')

  const listed = await startEdge(t, shadowToml([primary], shadow.url, 'methods = ["GET", "POST"]\nmax_body = "1kb"'))
  const big = 'x'.repeat(4096)
  const r1 = await post(`${listed.url}/things`, { method: 'POST', body: 'a small body', headers: { 'content-type': 'text/plain' } })
  assert.equal((JSON.parse(r1.body) as { echo: string }).echo, 'a small body')
  const r2 = await post(`${listed.url}/things`, { method: 'POST', body: big })
  assert.equal((JSON.parse(r2.body) as { echo: string }).echo, big, 'the client\'s large body reached the primary whole')
  await until(() => shadow.hits === 1, 3000, 'one copy')
  await until(() => bodies.length === 1, 3000, 'its body')
  assert.equal(bodies[0], 'a small body')
  assert.equal(seen[0]?.method, 'POST')
  assert.equal(seen[0]?.headers['content-length'], String('a small body'.length))
  assert.equal(seen[0]?.headers['x-shadow'], '1')
  assert.equal(sum(await metrics(listed), 'edge_shadow_skipped_total', { pool: 'api', reason: 'body_too_large' }), 1)
  // A chunked body (no content-length) over the cap is found out while it streams.
  const { Readable } = await import('node:stream')
  const { request } = await import('undici')
  const res = await request(`${listed.url}/things`, { method: 'POST', body: Readable.from([Buffer.alloc(800, 97), Buffer.alloc(800, 98)]) })
  assert.equal((JSON.parse(await res.body.text()) as { echo: string }).echo.length, 1600)
  await until(() => listed.edge.mirror.summary().pools[0]?.skipped.body_too_large === 2, 3000, 'the streamed body skipped')
  assert.equal(sum(await metrics(listed), 'edge_shadow_skipped_total', { pool: 'api', reason: 'body_too_large' }), 2)
  assert.equal(shadow.hits, 1)
})

test('a shadow that never answers: client latency and status unchanged, copies beyond max_inflight dropped and counted', async t => {
  const primary = await backend(t, api())
  const hung: ServerResponse[] = []
  const shadow = await backend(t, (_req, res) => { hung.push(res) })
  const te = await startEdge(t, shadowToml([primary], shadow.url, 'max_inflight = 3\ntimeout = "30s"'))
  const get = client(t)
  const times: number[] = []
  for (let i = 0; i < 40; i++) {
    const start = performance.now()
    const r = await get(`${te.url}/users/${i}`)
    times.push(performance.now() - start)
    assert.equal(r.status, 200)
    assert.equal((JSON.parse(r.body) as { name: string }).name, `user ${i}`)
  }
  times.sort((a, b) => a - b)
  const p99 = times[times.length - 1] as number
  assert.ok(p99 < 250, `slowest client request took ${p99.toFixed(1)} ms with a hung shadow`)
  await until(() => shadow.hits === 3, 3000, 'three copies hanging at the shadow')
  const s = await metrics(te)
  assert.equal(sum(s, 'edge_shadow_mirrored_total', { pool: 'api' }), 3)
  assert.equal(sum(s, 'edge_shadow_dropped_total', { pool: 'api' }), 37)
  assert.equal(te.edge.mirror.summary().pools[0]?.inflight, 3)
  for (const r of hung) r.destroy()
})

test('a shadow that times out counts as a shadow error, frees its slot, and shows as a status difference', async t => {
  const primary = await backend(t, api())
  const shadow = await backend(t, () => { /* never answers */ })
  const te = await startEdge(t, shadowToml([primary], shadow.url, 'max_inflight = 1\ntimeout = "100ms"'))
  const get = client(t)
  assert.equal((await get(`${te.url}/users/1`)).status, 200)
  await until(() => te.edge.mirror.summary().pools[0]?.errors === 1, 3000, 'the timeout counted')
  assert.equal(te.edge.mirror.summary().pools[0]?.inflight, 0)
  assert.equal((await get(`${te.url}/users/2`)).status, 200)
  await until(() => shadow.hits === 2, 3000, 'the slot was free again')
  const s = await metrics(te)
  assert.equal(sum(s, 'edge_shadow_errors_total', { pool: 'api', kind: 'timeout' }) >= 1, true)
  assert.deepEqual(te.edge.mirror.summary().pools[0]?.endpoints[0]?.fields.map(f => f.field), ['status'])
})

test('requests the edge refused before forwarding (no route 404, no backend 503) are not mirrored', async t => {
  const shadow = await backend(t, api())
  const refused = await refusedUrl()
  const te = await startEdge(t, `${head()}
[[routes]]
match.path_prefix = "/api"
pool = "api"
[pools.api]
backends = ["${refused}"]
[pools.api.health]
interval = "50ms"
timeout = "40ms"
fall = 1
[pools.api-remote1]
backends = ["${shadow.url}"]
[pools.api.shadow]
pool = "api-remote1"
`)
  const get = client(t)
  assert.equal((await get(`${te.url}/nowhere`)).status, 404)
  await until(() => te.edge.members.list('api').every(m => !m.healthy), 3000, 'the primary marked down')
  assert.equal((await get(`${te.url}/api/x`)).status, 503)
  await new Promise(resolve => setTimeout(resolve, 100))
  assert.equal(shadow.hits, 0)
  assert.equal(sum(await metrics(te), 'edge_shadow_mirrored_total'), 0)
})

test('sample = 0 mirrors nothing; sample_key samples the same keys every time', async t => {
  const primary = await backend(t, api())
  const shadow = await backend(t, api())
  const te = await startEdge(t, shadowToml([primary], shadow.url, 'sample = 0.5\nsample_key = "header:x-user"'))
  const get = client(t)
  const picked = new Map<string, number>()
  for (let round = 0; round < 2; round++) {
    for (let u = 0; u < 40; u++) {
      const before = shadow.hits
      await get(`${te.url}/users/1`, { headers: { 'x-user': `u${u}` } })
      await new Promise(resolve => setTimeout(resolve, 5))
      const key = `u${u}`
      const hit = shadow.hits > before ? 1 : 0
      if (round === 0) picked.set(key, hit)
      else assert.equal(hit, picked.get(key), `user ${key} sampled the same way twice`)
    }
  }
  const n = [...picked.values()].reduce((a, b) => a + b, 0)
  assert.ok(n > 5 && n < 35, `about half of 40 users sampled (got ${n})`)
  const none = await startEdge(t, shadowToml([primary], shadow.url, 'sample = 0'))
  const before = shadow.hits
  for (let i = 0; i < 5; i++) await get(`${none.url}/users/1`)
  assert.equal(sum(await metrics(none), 'edge_shadow_skipped_total', { reason: 'sampled_out' }), 5)
  assert.equal(shadow.hits, before)
})

test('worker summaries merge: counts add up, rates are recomputed', async () => {
  const { mergeShadow } = await import('../proxy/mirror/summary.js')
  const part = (compared: number, differing: number) => ({
    pools: [{ pool: 'api', shadow_pool: 'r1', sample: 1, secondary: false, inflight: 1, max_inflight: 64, mirrored: compared, dropped: 1, errors: 0, skipped: { method: 2 },
      endpoints: [{ endpoint: 'GET /u/:id', compared, differing, differing_rate: differing / compared, fields: [{ field: '$.a', count: differing, rate: differing / compared, noise_rate: 0, noise: false }], primary_ms: { p50: 1, p95: 2, p99: 3 }, shadow_ms: { p50: 10, p95: 20, p99: 30 } }] }],
  })
  const m = mergeShadow([part(10, 5), undefined, part(30, 0)])
  const e = m?.pools[0]?.endpoints[0]
  assert.equal(m?.pools[0]?.mirrored, 40)
  assert.equal(m?.pools[0]?.skipped.method, 4)
  assert.equal(e?.compared, 40)
  assert.equal(e?.differing, 5)
  assert.equal(e?.differing_rate, 0.125)
  assert.equal(e?.fields[0]?.rate, 0.125)
  assert.equal(mergeShadow([undefined]), undefined)
})

test('a reload keeps the counts and the slots of copies still out; the new rules apply to new copies', async t => {
  const { parseConfigText } = await import('../config/load.js')
  const primary = await backend(t, api())
  const held: ServerResponse[] = []
  const shadow = await backend(t, (req, res) => { if (held.length === 0) held.push(res); else api()(req, res) })
  const toml = (extra: string) => shadowToml([primary], shadow.url, `max_inflight = 1\n${extra}`)
  const te = await startEdge(t, toml(''))
  const get = client(t)
  assert.equal((await get(`${te.url}/users/1`)).status, 200)
  await until(() => held.length === 1, 3000, 'the first copy held at the shadow')
  await te.edge.reload(parseConfigText(toml('timeout = "4s"')))
  assert.equal(te.edge.config.pools.get('api')?.shadow?.timeout, 4000)
  assert.equal((await get(`${te.url}/users/2`)).status, 200)
  assert.equal(te.edge.mirror.summary().pools[0]?.dropped, 1, 'the held copy still holds the one slot after the reload')
  ;(held[0] as ServerResponse).writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: 1, name: 'user 1' }))
  await until(() => te.edge.mirror.summary().pools[0]?.inflight === 0, 3000, 'the slot given back')
  assert.equal((await get(`${te.url}/users/3`)).status, 200)
  await until(() => te.edge.mirror.summary().pools[0]?.endpoints[0]?.compared === 2, 3000, 'two comparisons over the reload')
  assert.equal(te.edge.mirror.summary().pools[0]?.mirrored, 2)
})

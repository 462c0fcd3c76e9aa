// Exchange hooks (proxy/forward/hooks.ts): observers see every exchange's moments without sitting in its path; a
// throwing observer never breaks an exchange; a retried connect failure is counted against the backend that
// failed; the request-body tee copies up to its cap and never holds the primary back.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { IncomingMessage } from 'node:http'
import { backend, client, head, parsePrometheus, startEdge, sum } from './edge-util.js'
import { refusedUrl } from './helpers.js'
import type { Exchange } from '../proxy/forward/exchange.js'
import type { ExchangeObserver } from '../proxy/forward/hooks.js'
import type { BodyCopy } from '../proxy/forward/tee.js'

function readAll (req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => { resolve(Buffer.concat(chunks)) })
    req.on('error', reject)
  })
}

test('a connect failure that a retry hid is counted against the backend that failed', async t => {
  const good = await backend(t)
  const refused = await refusedUrl()
  const te = await startEdge(t, `${head()}
[[routes]]
match.path_prefix = "/"
pool = "p"
[pools.p]
backends = ["${refused}", "${good.url}"]
[pools.p.retry]
attempts = 1
on = ["connect-failure"]
`)
  const get = client(t)
  // Round robin starts at the first listed backend: the first request is refused there and retried on `good`.
  const r = await get(`${te.url}/x`)
  assert.equal(r.status, 200)
  const samples = parsePrometheus(await te.edge.metrics.text()).samples
  assert.equal(sum(samples, 'edge_retries_total', { pool: 'p' }), 1)
  assert.equal(sum(samples, 'edge_upstream_errors_total', { pool: 'p', backend: refused, kind: 'connect' }), 1,
    'the refusal is counted against the refused backend although the client got a 200')
  assert.equal(sum(samples, 'edge_upstream_errors_total', { pool: 'p', backend: good.url }), 0)
})

test('observers see each moment in order; one that throws in every hook never breaks an exchange', async t => {
  const good = await backend(t, (_q, s) => { s.end('fine') })
  const refused = await refusedUrl()
  const te = await startEdge(t, `${head()}
[[routes]]
match.path_prefix = "/ok"
pool = "ok"
[[routes]]
match.path_prefix = "/down"
pool = "down"
[pools.ok]
backends = ["${good.url}"]
[pools.down]
backends = ["${refused}"]
`)
  const seen: string[] = []
  const recorder: ExchangeObserver = {
    name: 'recorder',
    onRequest: (x) => { seen.push(`request ${x.pool.name} ${x.retries}`) },
    onResponseStart: (x, status, headers) => { seen.push(`start ${x.pool.name} ${status} ${headers === undefined ? 'edge' : 'backend'}`) },
    onError: (x, code) => { seen.push(`error ${x.pool.name} ${code}`) },
    onResponseEnd: (x) => { seen.push(`end ${x.pool.name} ${x.status}`) },
  }
  const thrower: ExchangeObserver = {
    name: 'thrower',
    onRequest: () => { throw new Error('boom in onRequest') },
    onResponseStart: () => { throw new Error('boom in onResponseStart') },
    onError: () => { throw new Error('boom in onError') },
    onResponseEnd: () => { throw new Error('boom in onResponseEnd') },
  }
  // The thrower first: the recorder after it must still be called at every moment.
  const offThrower = te.edge.hooks.subscribe(thrower)
  const offRecorder = te.edge.hooks.subscribe(recorder)
  const get = client(t)
  for (let i = 0; i < 3; i++) {
    const r = await get(`${te.url}/ok/${i}`)
    assert.equal(r.status, 200)
    assert.equal(r.body, 'fine')
  }
  const down = await get(`${te.url}/down/x`)
  assert.equal(down.status, 502)
  assert.match(down.body, /code: EP_ERR_UPSTREAM_CONNECT/)
  assert.deepEqual(seen.slice(0, 3), ['request ok 0', 'start ok 200 backend', 'end ok 200'])
  assert.equal(seen.length, 3 * 3 + 4)
  assert.deepEqual(seen.slice(9), ['request down 0', 'error down EP_ERR_UPSTREAM_CONNECT', 'start down 502 edge', 'end down 502'])
  const samples = parsePrometheus(await te.edge.metrics.text()).samples
  assert.ok(sum(samples, 'edge_internal_errors_total', { where: 'hook' }) >= 13, 'every throw is counted')
  // The built-in observers (metrics, passive health) still ran for every exchange.
  assert.equal(sum(samples, 'edge_requests_total', { route: 'route-1' }) + sum(samples, 'edge_requests_total', { route: 'route-2' }), 4)
  offThrower()
  offRecorder()
  seen.length = 0
  assert.equal((await get(`${te.url}/ok/after`)).status, 200)
  assert.deepEqual(seen, [], 'unsubscribed observers hear nothing')
})

test('the request-body tee copies a body up to its cap while it streams; past the cap the copy is abandoned, never the primary', async t => {
  const received: Buffer[] = []
  const sink = await backend(t, (req, res) => { void readAll(req).then(b => { received.push(b); res.end(`got ${b.length}`) }) })
  const te = await startEdge(t, `${head()}
[[routes]]
match.path_prefix = "/"
pool = "p"
[pools.p]
backends = ["${sink.url}"]
`)
  const CAP = 64 * 1024
  const copies: Array<{ copy: BodyCopy, data: Promise<Buffer | 'abandoned'> }> = []
  const unread: BodyCopy[] = []
  te.edge.hooks.subscribe({
    name: 'copier',
    onRequest: (x: Exchange) => {
      if (x.retries !== 0) return
      const copy = x.teeBody(CAP)
      if (copy === undefined) return
      copies.push({
        copy,
        data: new Promise(resolve => {
          const chunks: Buffer[] = []
          copy.on('data', (c: Buffer) => chunks.push(c))
          copy.on('end', () => { resolve(Buffer.concat(chunks)) })
          copy.on('close', () => { if (copy.outcome !== 'complete') resolve('abandoned') })
        }),
      })
      // A second copy nobody reads: it must cost at most its cap and never pause the primary.
      const idle = x.teeBody(CAP)
      if (idle !== undefined) unread.push(idle)
    },
  })
  const post = client(t)
  const small = 'a'.repeat(10_000)
  let r = await post(`${te.url}/small`, { method: 'POST', body: small })
  assert.equal(r.body, `got ${small.length}`)
  const big = 'b'.repeat(CAP * 4) // 256 KiB: four times the cap
  r = await post(`${te.url}/big`, { method: 'POST', body: big })
  assert.equal(r.status, 200)
  assert.equal(r.body, `got ${big.length}`, 'the primary got the whole body although the copy gave up')
  assert.equal(received[1]?.toString(), big)
  r = await post(`${te.url}/get`)
  assert.equal(r.status, 200)
  assert.equal(copies.length, 2, 'a request without a body has nothing to copy')
  const [first, second] = copies
  assert.equal(((await first?.data) as Buffer).toString(), small)
  assert.equal(first?.copy.outcome, 'complete')
  assert.equal(await second?.data, 'abandoned')
  assert.equal(second?.copy.outcome, 'truncated')
  assert.equal(unread[0]?.outcome, 'complete', 'an unread copy under its cap completes (buffered, bounded by the cap)')
  assert.equal(unread[1]?.outcome, 'truncated')
  assert.equal(te.edge.hooks.teesCreated, 2)
})

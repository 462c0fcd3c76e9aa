// The shadow's comparison (proxy/mirror/compare.ts) and endpoint grouping (endpoints.ts): JSON field by field on
// flattened paths with arrays by index, ignore rules (headers; the JSONPath subset, covering what is below a
// path), other bodies by length and hash, and Diffy's noise thresholds.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { compare, FieldStats, flatten, headerRecord, NOISE_ABSOLUTE, NOISE_RELATIVE, type Side } from '../proxy/mirror/compare.js'
import { EndpointMatcher } from '../proxy/mirror/endpoints.js'
import { parseJsonPath } from '../config/shadow.js'

function side (status: number, body: unknown, headers: Record<string, string> = {}): Side {
  const buf = body === undefined ? Buffer.alloc(0) : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body))
  return { status, headers: { 'content-type': typeof body === 'string' ? 'text/plain' : 'application/json', ...headers }, body: buf, bytes: buf.length }
}

const rules = (ignoreJson: string[] = [], ignoreHeaders: string[] = []) => ({
  ignoreHeaders: new Set(ignoreHeaders),
  ignoreJson: ignoreJson.map(text => ({ steps: parseJsonPath(text) as Exclude<ReturnType<typeof parseJsonPath>, string> })),
})

test('flatten: leaves by path, arrays by index, odd keys quoted, empty containers as leaves', () => {
  const f = flatten({ a: { b: 1 }, items: [{ x: true }, { x: null }], 'odd key': 's', e: [], o: {} })
  assert.deepEqual([...f.values], [['$.a.b', 1], ['$.items[0].x', true], ['$.items[1].x', null], ['$["odd key"]', 's'], ['$.e', '[]'], ['$.o', '{}']])
})

test('JSON bodies: one changed field, one missing, ignore rules with [*] and prefixes', () => {
  const a = side(200, { id: 1, name: 'a', meta: { t: 1, u: 2 }, items: [{ etag: 'x', n: 1 }, { etag: 'y', n: 2 }], gone: 1 })
  const b = side(200, { id: 1, name: 'b', meta: { t: 9, u: 9 }, items: [{ etag: 'z', n: 1 }, { etag: 'w', n: 3 }] })
  assert.deepEqual(compare(a, b, rules(['$.items[*].etag', '$.meta'])), [
    { field: '$.name', primary: 'a', shadow: 'b' },
    { field: '$.items[1].n', primary: 2, shadow: 3 },
    { field: '$.gone', primary: 1, shadow: '(absent)' },
  ])
  assert.deepEqual(compare(a, b, rules(['$.items[0].etag', '$.meta.t'])).map(d => d.field), ['$.name', '$.meta.u', '$.items[1].etag', '$.items[1].n', '$.gone'])
})

test('status, headers minus ignored and hop-by-hop, non-JSON bodies by length and hash', () => {
  const a = side(200, 'hello', { date: 'x', server: 'v1', connection: 'keep-alive' })
  const b = side(201, 'hellO', { date: 'y', server: 'v2' })
  const d = compare(a, b, rules([], ['date']))
  assert.deepEqual(d.map(x => x.field), ['status', 'header.server', 'body'])
  assert.match(String(d[2]?.primary), /^5 bytes sha256:[0-9a-f]{16}$/)
  assert.deepEqual(compare(side(200, 'same'), side(200, 'same'), rules()), [])
  // A failed shadow: only the status, with the reason.
  assert.deepEqual(compare(side(200, 'x'), { status: 0, headers: {}, body: undefined, bytes: 0, error: 'timeout' }, rules()), [{ field: 'status', primary: 200, shadow: 'timeout' }])
  assert.deepEqual(headerRecord([Buffer.from('Set-Cookie'), Buffer.from('a=1'), Buffer.from('set-cookie'), Buffer.from('b=2')]), { 'set-cookie': 'a=1, b=2' })
})

test('noise: a field counts only when its raw rate beats its noise rate by both Diffy margins', () => {
  assert.equal(NOISE_RELATIVE, 0.2)
  assert.equal(NOISE_ABSOLUTE, 0.0003)
  const s = new FieldStats()
  const d = (field: string) => ({ field, primary: 1, shadow: 2 })
  for (let i = 0; i < 100; i++) s.add([d('$.rand'), ...(i < 50 ? [d('$.real')] : []), ...(i < 10 ? [d('$.jitter')] : [])], [d('$.rand'), ...(i < 9 ? [d('$.jitter')] : [])])
  assert.equal(s.significant('$.rand'), false, 'as often on the secondary: noise')
  assert.equal(s.significant('$.real'), true, 'never on the secondary: a difference')
  assert.equal(s.significant('$.jitter'), false, '10% raw vs 9% noise: (0.01 / 0.19) is under the relative margin')
  const only = new FieldStats()
  only.add([d('$.x')], undefined)
  assert.equal(only.significant('$.x'), true, 'without a secondary every differing field counts')
})

test('endpoints: configured patterns first, else id-like segments folded', () => {
  const m = new EndpointMatcher(['/users/:id', '/orders/:id/items', '/static/*'])
  assert.equal(m.match('/users/42?x=1'), '/users/:id')
  assert.equal(m.match('/users/42/avatar'), '/users/:id/avatar')
  assert.equal(m.match('/orders/7/items'), '/orders/:id/items')
  assert.equal(m.match('/static/css/site.css'), '/static/*')
  assert.equal(m.match('/carts/0b6f3d1e-8a55-4a8e-9f7c-2d1e3c4b5a69'), '/carts/:id')
  assert.equal(m.match('/'), '/')
  assert.equal(m.match('/users/'), '/users/')
})

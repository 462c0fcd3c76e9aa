// Tunnels end to end: bulk data and flow control through real edge and tunnel processes. A 100 MB download
// and upload arrive intact; a reader that stops does not slow another stream on the same tunnel; and a client that refuses
// to read a 1 GB response costs the edge bounded memory (the stall reaches back to the backend).
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import http from 'node:http'
import { connect, type Socket } from 'node:net'
import { deadline, httpServer, rssOf, sleep, startEdge, startRegisteredTunnel, type EdgeProc } from './tunnel-edge-util.js'

const MB = 1024 * 1024
const CHUNK = 64 * 1024
const ZEROS = Buffer.alloc(CHUNK)

interface Sent { bytes: number, hash: string, done: boolean }

/**
 * GET /bytes?n=N&id=X streams N random bytes, generated as they are sent (never held), and records how many
 * went out and their SHA-256 under X. Writes wait for 'drain', so `bytes` is what the transport accepted.
 */
async function bulkBackend (t: TestContext): Promise<{ url: string, sent: Map<string, Sent> }> {
  const sent = new Map<string, Sent>()
  const { url } = await httpServer(t, (req, res) => {
    const q = new URL(req.url ?? '/', 'http://x').searchParams
    const total = Number(q.get('n'))
    const rec: Sent = { bytes: 0, hash: '', done: false }
    sent.set(q.get('id') ?? '', rec)
    // cheap=1: the same zero chunk over and over, unhashed (for streams nobody reads to the end).
    const h = q.get('cheap') === null ? createHash('sha256') : undefined
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total })
    const pump = (): void => {
      while (rec.bytes < total) {
        const n = Math.min(CHUNK, total - rec.bytes)
        const chunk = h === undefined ? ZEROS.subarray(0, n) : randomBytes(n)
        h?.update(chunk)
        rec.bytes += chunk.length
        if (!res.write(chunk)) { res.once('drain', pump); return }
      }
      rec.hash = h?.digest('hex') ?? ''
      rec.done = true
      res.end()
    }
    res.on('close', () => { res.off('drain', pump) })
    pump()
  })
  return { url, sent }
}

/** Downloads through the edge, hashing as it reads; resolves with the hash, byte count and seconds. */
function download (edge: EdgeProc, path: string): Promise<{ hash: string, bytes: number, seconds: number, status: number }> {
  const start = performance.now()
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: edge.ports.http, path, agent: false, headers: { host: 'app.tunnel.test' } }, res => {
      const h = createHash('sha256')
      let bytes = 0
      res.on('data', (c: Buffer) => { h.update(c); bytes += c.length })
      res.on('end', () => { resolve({ hash: h.digest('hex'), bytes, seconds: (performance.now() - start) / 1000, status: res.statusCode ?? 0 }) })
      res.on('error', reject)
    })
    req.on('error', reject)
  })
}

/** A raw client that sends a GET and then never reads a byte of the answer. */
async function stalledClient (t: TestContext, edge: EdgeProc, path: string): Promise<Socket> {
  const sock = connect({ host: '127.0.0.1', port: edge.ports.http })
  t.after(() => sock.destroy())
  await once(sock, 'connect')
  sock.pause()
  sock.write(`GET ${path} HTTP/1.1\r\nhost: app.tunnel.test\r\n\r\n`)
  return sock
}

/** Waits until `rec` stops growing for `quietMs` (the stall reached the backend), bounded by `maxMs`. */
async function settled (rec: () => number, quietMs: number, maxMs: number): Promise<number> {
  const end = Date.now() + maxMs
  let last = -1
  let since = Date.now()
  while (Date.now() < end) {
    const v = rec()
    if (v !== last) { last = v; since = Date.now() } else if (Date.now() - since >= quietMs) return v
    await sleep(100)
  }
  return rec()
}

test('a 100 MB download through a tunnel arrives intact (SHA-256)', async t => {
  const edge = await startEdge(t)
  const backend = await bulkBackend(t)
  await startRegisteredTunnel(t, edge, 'app.tunnel.test', backend.url)
  const r = await download(edge, `/bytes?n=${100 * MB}&id=big`)
  assert.equal(r.status, 200)
  assert.equal(r.bytes, 100 * MB)
  assert.equal(backend.sent.get('big')?.done, true)
  assert.equal(r.hash, backend.sent.get('big')?.hash)
  t.diagnostic(`100 MB through the tunnel in ${r.seconds.toFixed(2)} s: ${(100 / r.seconds).toFixed(1)} MB/s`)
})

test('a 100 MB upload through a tunnel arrives intact (SHA-256)', async t => {
  const edge = await startEdge(t)
  const { url } = await httpServer(t, (req, res) => {
    const h = createHash('sha256')
    let n = 0
    req.on('data', (c: Buffer) => { h.update(c); n += c.length })
    req.on('end', () => { res.end(`${n} ${h.digest('hex')}`) })
  })
  await startRegisteredTunnel(t, edge, 'app.tunnel.test', url)
  const h = createHash('sha256')
  const start = performance.now()
  const answer = await new Promise<string>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: edge.ports.http, method: 'PUT', path: '/up', agent: false, headers: { host: 'app.tunnel.test', 'content-length': 100 * MB } }, res => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => { resolve(body) })
    })
    req.on('error', reject)
    let sent = 0
    const pump = (): void => {
      while (sent < 100 * MB) {
        const chunk = randomBytes(CHUNK)
        h.update(chunk)
        sent += chunk.length
        if (!req.write(chunk)) { req.once('drain', pump); return }
      }
      req.end()
    }
    pump()
  })
  const seconds = (performance.now() - start) / 1000
  assert.equal(answer, `${100 * MB} ${h.digest('hex')}`)
  t.diagnostic(`100 MB upload through the tunnel in ${seconds.toFixed(2)} s: ${(100 / seconds).toFixed(1)} MB/s`)
})

test('a stalled reader does not slow another stream on the same tunnel (50 MB moves meanwhile)', async t => {
  const edge = await startEdge(t)
  const backend = await bulkBackend(t)
  await startRegisteredTunnel(t, edge, 'app.tunnel.test', backend.url)
  await stalledClient(t, edge, `/bytes?n=${1024 * MB}&id=stalled&cheap=1`)
  const stalledAt = await settled(() => backend.sent.get('stalled')?.bytes ?? 0, 500, 8000)
  assert.ok(stalledAt > 0 && stalledAt < 128 * MB, `stalled stream sent ${stalledAt} bytes`)
  const r = await download(edge, `/bytes?n=${50 * MB}&id=moving`)
  assert.equal(r.bytes, 50 * MB)
  assert.equal(r.hash, backend.sent.get('moving')?.hash)
  // "Normal speed": 50 MB on loopback takes well under a second alone; 10 s means the stall held it back.
  assert.ok(r.seconds < 10, `50 MB took ${r.seconds} s beside a stalled stream`)
  // The stalled stream is still stalled, not dropped or drained into memory somewhere.
  assert.ok((backend.sent.get('stalled')?.bytes ?? 0) < 128 * MB)
  assert.equal(backend.sent.get('stalled')?.done, false)
  t.diagnostic(`stalled stream held at ${(stalledAt / MB).toFixed(1)} MB sent; 50 MB beside it in ${r.seconds.toFixed(2)} s: ${(50 / r.seconds).toFixed(1)} MB/s`)
})

test('edge RSS stays bounded while a client refuses to read a 1 GB response through the tunnel', async t => {
  const edge = await startEdge(t)
  const pid = edge.child.pid as number
  const backend = await bulkBackend(t)
  await startRegisteredTunnel(t, edge, 'app.tunnel.test', backend.url)
  // Warm up: the edge's heap and pools settle after one transfer, so the baseline is not a cold process.
  const warm = await download(edge, `/bytes?n=${20 * MB}&id=warm`)
  assert.equal(warm.hash, backend.sent.get('warm')?.hash)
  const before = rssOf(pid)
  await stalledClient(t, edge, `/bytes?n=${1024 * MB}&id=gig&cheap=1`)
  const stalledAt = await settled(() => backend.sent.get('gig')?.bytes ?? 0, 1000, 10_000)
  await sleep(3000) // several seconds of stalled transfer
  const after = rssOf(pid)
  const sentLater = backend.sent.get('gig')?.bytes ?? 0
  t.diagnostic(`edge RSS ${(before / MB).toFixed(1)} MB -> ${(after / MB).toFixed(1)} MB (+${((after - before) / MB).toFixed(1)} MB); backend sent ${(sentLater / MB).toFixed(1)} MB of 1024 MB`)
  assert.ok(after - before < 64 * MB, `edge RSS grew ${((after - before) / MB).toFixed(1)} MB`)
  // Backpressure reached the backend: it stopped sending, nothing kept reading the gigabyte into memory.
  assert.ok(sentLater < 128 * MB, `backend sent ${sentLater} bytes to a client that reads nothing`)
  assert.ok(sentLater - stalledAt < 8 * MB, `backend kept sending: ${stalledAt} -> ${sentLater} bytes`)
})

test('many stalled readers (more than the session window covers) do not stall the tunnel for others', async t => {
  const edge = await startEdge(t)
  const backend = await bulkBackend(t)
  await startRegisteredTunnel(t, edge, 'app.tunnel.test', backend.url)
  // 34 clients stop reading large responses: each pins its stream's whole window at the edge. With a session
  // window of 32 stream windows (the old default), that alone froze every other stream on this tunnel.
  for (let i = 0; i < 34; i++) await stalledClient(t, edge, `/bytes?n=${1024 * MB}&id=s${i}&cheap=1`)
  const total = (): number => { let n = 0; for (let i = 0; i < 34; i++) n += backend.sent.get(`s${i}`)?.bytes ?? 0; return n }
  await settled(total, 700, 15_000)
  const r = await Promise.race([download(edge, `/bytes?n=${5 * MB}&id=after`), deadline(10_000, undefined)])
  assert.ok(r !== undefined, 'a download beside 34 stalled readers did not finish in 10 s')
  assert.equal(r.hash, backend.sent.get('after')?.hash)
  t.diagnostic(`34 stalled readers (backend sent ${(total() / MB).toFixed(0)} MB to them); 5 MB beside them in ${r.seconds.toFixed(2)} s`)
})

// Flow control over real loopback sockets: a stalled stream does not block its neighbours, one stream
// carries 100 MB intact, and a reader that refuses to read pauses its sender within the window.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createHash, randomBytes } from 'node:crypto'
import type { Writable } from 'node:stream'
import type { Socket } from 'node:net'
import { MAX_DATA } from '../packer/frame.js'
import { DEFAULT_STREAM_WINDOW } from '../packer/session.js'
import type { TunnelStream } from '../packer/stream.js'
import { startEdge, startClient, registered, tcpServer, CLIENT, sleep } from './packer-util.js'

const MB = 1024 * 1024
// An odd-sized block, so frame boundaries drift across block boundaries and reordering would show in the hash.
const BLOCK = randomBytes(MB + 37)

/** Writes `total` bytes of BLOCK, honouring backpressure; resolves with the SHA-256 of what was written. */
async function writeBytes (w: Writable, total: number): Promise<string> {
  const hash = createHash('sha256')
  let sent = 0
  while (sent < total) {
    const n = Math.min(64 * 1024, total - sent)
    const off = sent % BLOCK.length
    const chunk = off + n <= BLOCK.length ? BLOCK.subarray(off, off + n) : BLOCK.subarray(off)
    hash.update(chunk)
    sent += chunk.length
    if (!w.write(chunk)) await once(w, 'drain')
  }
  w.end()
  return hash.digest('hex')
}

test('a stream whose reader stopped does not slow another stream moving 50 MB', async t => {
  const { edge, url } = await startEdge(t)
  // "stall" writes endlessly into a stream nobody reads; "bulk" sends 50 MB and ends.
  const stall = await tcpServer(t, sock => { void writeBytes(sock, 512 * MB).catch(() => {}) })
  let bulkHash = ''
  const bulk = await tcpServer(t, sock => { void writeBytes(sock, 50 * MB).then(h => { bulkHash = h }) })
  const client = startClient(t, url, [
    { service: 'tcp', name: 'stall.tunnel.test', to: `tcp://127.0.0.1:${stall.port}` },
    { service: 'tcp', name: 'bulk.tunnel.test', to: `tcp://127.0.0.1:${bulk.port}` },
  ])
  const backendStreams = new Map<string, TunnelStream>()
  client.on('stream', (s: TunnelStream) => { backendStreams.set(s.info.servername, s) })
  const session = await registered(edge, 'stall.tunnel.test')

  const stalled = edge.openStream(session, { ...CLIENT, service: 'tcp', servername: 'stall.tunnel.test' })
  stalled.on('error', () => {}) // the session closes under it when the test ends
  stalled.end()
  await sleep(200) // let the stalled stream fill its window first
  const moving = edge.openStream(session, { ...CLIENT, service: 'tcp', servername: 'bulk.tunnel.test' })
  moving.end()

  let maxEdgeBuffered = 0; let maxBackendQueued = 0; let maxWsBuffered = 0
  const sample = setInterval(() => {
    maxEdgeBuffered = Math.max(maxEdgeBuffered, stalled.readableLength, stalled.bufferedBytes)
    const b = backendStreams.get('stall.tunnel.test')
    if (b !== undefined) maxBackendQueued = Math.max(maxBackendQueued, b.queuedBytes)
    const ws = client.sessions()[0]?.ws
    if (ws !== undefined) maxWsBuffered = Math.max(maxWsBuffered, ws.bufferedAmount)
  }, 5)
  t.after(() => clearInterval(sample))

  const start = process.hrtime.bigint()
  const hash = createHash('sha256')
  let received = 0
  for await (const chunk of moving) { hash.update(chunk as Buffer); received += (chunk as Buffer).length }
  const secs = Number(process.hrtime.bigint() - start) / 1e9
  clearInterval(sample)
  t.diagnostic(`50 MB beside a stalled stream: ${(50 / secs).toFixed(0)} MB/s`)

  assert.equal(received, 50 * MB)
  assert.equal(hash.digest('hex'), bulkHash)
  assert.ok(secs < 15, `took ${secs.toFixed(1)} s`)
  // The stalled stream is parked by its window on both sides: nothing grew past it.
  const backendStalled = backendStreams.get('stall.tunnel.test')!
  assert.equal(stalled.readableLength, DEFAULT_STREAM_WINDOW)
  assert.ok(maxEdgeBuffered <= DEFAULT_STREAM_WINDOW, `edge buffered ${maxEdgeBuffered}`)
  assert.equal(backendStalled.sendWindow, 0)
  assert.ok(maxBackendQueued <= 2 * MAX_DATA, `backend queued ${maxBackendQueued}`)
  assert.ok(maxWsBuffered <= 512 * 1024 + 2 * MAX_DATA, `ws buffered ${maxWsBuffered}`)
  assert.ok(backendStalled.stats.windowStalls > 0)
  assert.equal(stalled.destroyed, false)
})

test('100 MB through one stream arrives intact (SHA-256), heartbeats answered throughout', async t => {
  // PINGs every 20 ms must keep getting PONGs while the data flows: control frames overtake queued data.
  const heartbeat = { pingIntervalMs: 20, pingTimeoutMs: 3000 }
  const { edge, url } = await startEdge(t, { session: heartbeat })
  // The target hashes what it receives and answers with the digest.
  const sink = await tcpServer(t, sock => {
    const h = createHash('sha256')
    sock.on('data', c => h.update(c))
    sock.on('end', () => { sock.end(h.digest('hex')) })
  })
  const client = startClient(t, url, [{ service: 'http', name: 'app.tunnel.test', to: `http://127.0.0.1:${sink.port}` }], { session: heartbeat })
  const session = await registered(edge, 'app.tunnel.test')
  const s = edge.openStream(session, { ...CLIENT, service: 'http', servername: 'app.tunnel.test' })
  let maxWsBuffered = 0
  const sample = setInterval(() => { maxWsBuffered = Math.max(maxWsBuffered, session.ws.bufferedAmount) }, 5)
  t.after(() => clearInterval(sample))
  const reply: Buffer[] = []
  s.on('data', c => reply.push(c as Buffer))
  const start = process.hrtime.bigint()
  const sent = await writeBytes(s, 100 * MB)
  await once(s, 'end')
  const secs = Number(process.hrtime.bigint() - start) / 1e9
  clearInterval(sample)
  t.diagnostic(`100 MB over one stream: ${(100 / secs).toFixed(0)} MB/s`)
  assert.equal(Buffer.concat(reply).toString(), sent)
  assert.equal(s.stats.bytesOut, 100 * MB)
  assert.equal(session.closed, false)
  assert.equal(client.sessions()[0]?.closed, false)
  assert.ok(maxWsBuffered <= 512 * 1024 + 2 * MAX_DATA, `ws buffered ${maxWsBuffered}`)
})

test('a reader that refuses to read pauses its sender within window + two frames', async t => {
  const { edge, url } = await startEdge(t)
  const held: Socket[] = []
  const sink = await tcpServer(t, sock => { sock.pause(); held.push(sock) })
  const client = startClient(t, url, [{ service: 'tcp', name: 'db.tunnel.test', to: `tcp://127.0.0.1:${sink.port}` }])
  let backend: TunnelStream | undefined
  client.on('stream', (s: TunnelStream) => { backend = s })
  const session = await registered(edge, 'db.tunnel.test')
  const s = edge.openStream(session, { ...CLIENT, service: 'tcp', servername: 'db.tunnel.test' })
  s.on('error', () => {})

  let maxQueued = 0
  const sample = setInterval(() => {
    // What the edge holds for this stream: accepted but unsent, plus sent but not yet consumed by the backend's target.
    const inFlight = backend === undefined ? 0 : s.stats.bytesOut - backend.consumed
    maxQueued = Math.max(maxQueued, s.queuedBytes + inFlight)
  }, 2)
  t.after(() => clearInterval(sample))
  // Offer 200 MB; the writer waits for a 'drain' that must stop coming.
  const writing = writeBytes(s, 200 * MB)
  const stuck = await Promise.race([writing.then(() => false), (async () => {
    // Three quiet samples in a row: one slow tick on a loaded machine is not a pause.
    for (let last = -1, quiet = 0; ;) {
      await sleep(300)
      quiet = s.stats.bytesOut === last ? quiet + 1 : 0
      if (quiet >= 3) return true
      last = s.stats.bytesOut
    }
  })()])
  clearInterval(sample)
  assert.ok(stuck, 'the sender was never paused')
  assert.ok(s.stats.bytesOut < 64 * MB, `sent ${s.stats.bytesOut} bytes`) // kernel buffers absorb a few MB, no more
  assert.equal(s.sendWindow, 0)
  assert.ok(s.queuedBytes <= MAX_DATA, `queued ${s.queuedBytes}`)
  assert.ok(backend !== undefined && backend.bufferedBytes <= DEFAULT_STREAM_WINDOW)
  // The window bounds what is in flight; the Writable takes one more write while it is below its high-water mark
  // (one frame), so a chunk shorter than a frame lets a second one queue behind it: window + two frames at most.
  assert.ok(maxQueued <= DEFAULT_STREAM_WINDOW + 2 * MAX_DATA, `queued+in flight ${maxQueued}`)
  assert.ok(session.stats.windowStalls > 0)
  s.destroy()
})

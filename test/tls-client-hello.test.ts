// The ClientHello reader: real hellos from node's TLS client, fed whole, byte by byte and re-framed into many
// records; every prefix of a real hello is "need more"; garbage and mutations never throw or hit the catch-all.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import tls from 'node:tls'
import { ClientHelloParser, type HelloResult } from '../proxy/tls/client-hello.js'

/** What node's TLS client sends first, captured by a plain TCP server. */
async function captureHello (options: tls.ConnectionOptions): Promise<Buffer> {
  const server = net.createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      server.once('connection', s => {
        let buf = Buffer.alloc(0)
        s.on('data', d => {
          buf = Buffer.concat([buf, d])
          if (buf.length >= 5 && buf.length >= 5 + buf.readUInt16BE(3)) { resolve(buf); s.destroy() }
        })
      })
      const c = tls.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, ...options })
      c.on('error', () => {})
      setTimeout(() => { reject(new Error('no hello')) }, 3000).unref()
    })
  } finally {
    server.close()
  }
}

/** Re-frames a single-record hello into records of `size` bytes of handshake payload each. */
function reframe (hello: Buffer, size: number): Buffer {
  const payload = hello.subarray(5)
  const parts: Buffer[] = []
  for (let i = 0; i < payload.length; i += size) {
    const frag = payload.subarray(i, i + size)
    const h = Buffer.from([0x16, 0x03, 0x01, 0, 0])
    h.writeUInt16BE(frag.length, 3)
    parts.push(h, frag)
  }
  return Buffer.concat(parts)
}

function feed (bytes: Buffer, chunk = bytes.length, parser = new ClientHelloParser()): HelloResult {
  let r: HelloResult = parser.result
  for (let i = 0; i < bytes.length && r.kind === 'need-more'; i += chunk) r = parser.push(bytes.subarray(i, i + chunk))
  return r
}

/** Deterministic PRNG (mulberry32) so a failing fuzz case can be replayed. */
function rng (seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function assertNoCatchAll (r: HelloResult): void {
  assert.ok(!(r.kind === 'invalid' && r.reason.startsWith('parser error')), JSON.stringify(r))
}

test('real ClientHellos: SNI and ALPN, whole, 1 byte at a time, and split over many records', async () => {
  const withSni = await captureHello({ servername: 'Api.Example.com.', ALPNProtocols: ['h2', 'http/1.1'] })
  const noSni = await captureHello({ ALPNProtocols: ['http/1.1'] }) // an IP host: node sends no SNI
  const tls12 = await captureHello({ servername: 'old.example.com', maxVersion: 'TLSv1.2' })
  const expect = { kind: 'done', sni: 'api.example.com', alpn: ['h2', 'http/1.1'] }
  for (const r of [feed(withSni), feed(withSni, 1), feed(reframe(withSni, 1)), feed(reframe(withSni, 7), 3), feed(reframe(withSni, 100), 1)]) {
    assert.deepEqual({ kind: r.kind, sni: r.kind === 'done' && r.sni, alpn: r.kind === 'done' && r.alpn }, expect)
  }
  const n = feed(noSni, 1)
  assert.ok(n.kind === 'done' && n.sni === undefined && n.alpn[0] === 'http/1.1', JSON.stringify(n))
  const o = feed(tls12, 1)
  assert.ok(o.kind === 'done' && o.sni === 'old.example.com', JSON.stringify(o))
  // The bytes to replay are exactly what came in, including anything after the hello in the same read.
  const p = new ClientHelloParser()
  p.push(Buffer.concat([withSni, Buffer.from('tail')]))
  assert.deepEqual(p.buffered, Buffer.concat([withSni, Buffer.from('tail')]))
})

test('every strict prefix of a real hello (plain and re-framed) is need-more, fed whole or bytewise', async () => {
  const hello = await captureHello({ servername: 'a.example.com', ALPNProtocols: ['h2'] })
  for (const bytes of [hello, reframe(hello, 13)]) {
    for (let len = 0; len < bytes.length; len++) {
      assert.equal(feed(bytes.subarray(0, len)).kind, 'need-more', `prefix ${len}`)
    }
    const p = new ClientHelloParser()
    for (let i = 0; i < bytes.length - 1; i++) assert.equal(p.push(bytes.subarray(i, i + 1)).kind, 'need-more')
    assert.equal(p.push(bytes.subarray(bytes.length - 1)).kind, 'done')
  }
})

test('not TLS is refused on the first bytes; oversize and malformed hellos are invalid', async () => {
  assert.equal(feed(Buffer.from('G')).kind, 'invalid')
  assert.equal(feed(Buffer.from([0x16, 0x02])).kind, 'invalid')
  assert.equal(feed(Buffer.from([0x17, 0x03, 0x03, 0x00, 0x10])).kind, 'invalid') // application data first
  // A hello that claims 20 KiB is refused before 16 KiB are buffered.
  const big = Buffer.from([0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00, 0x50, 0x00, 3, 3, 0, 0])
  assert.match(JSON.stringify(feed(big)), /exceeds/)
  // 1-byte records forever: stopped at the cap.
  const drip = reframe(Buffer.concat([Buffer.from([0x16, 3, 1, 0, 0]), Buffer.from([1, 0, 0x3f, 0xf0]), Buffer.alloc(20_000)]), 1)
  const r = feed(drip, 997)
  assert.ok(r.kind === 'invalid' && /within|exceeds/.test(r.reason), JSON.stringify(r))
  const hello = await captureHello({ servername: 'a.example.com' })
  const badLen = Buffer.from(hello)
  badLen.writeUInt16BE(badLen.readUInt16BE(5 + 4 + 34 + 1 + badLen[5 + 4 + 34]!) + 2, 5 + 4 + 34 + 1 + badLen[5 + 4 + 34]!)
  assertNoCatchAll(feed(badLen))
})

test('1000 random inputs and 2000 truncated or mutated real hellos never throw', async () => {
  const rand = rng(0xC0FFEE)
  const hellos = [
    await captureHello({ servername: 'x.example.com', ALPNProtocols: ['h2', 'http/1.1'] }),
    await captureHello({ ALPNProtocols: ['http/1.1'] }),
  ]
  for (let i = 0; i < 1000; i++) {
    const len = Math.floor(rand() * 700)
    const b = Buffer.alloc(len)
    for (let j = 0; j < len; j++) b[j] = Math.floor(rand() * 256)
    // Half of them start like a handshake record so they get past the first-byte check.
    if (i % 2 === 0 && len >= 6) { b[0] = 0x16; b[1] = 3; b[5] = 1 }
    const r = feed(b, 1 + Math.floor(rand() * 64))
    assertNoCatchAll(r)
  }
  for (let i = 0; i < 2000; i++) {
    const src = Buffer.from(hellos[i % 2] as Buffer)
    const framed = i % 3 === 0 ? reframe(src, 1 + Math.floor(rand() * 40)) : src
    const m = Buffer.from(framed)
    const flips = 1 + Math.floor(rand() * 4)
    for (let f = 0; f < flips; f++) m[Math.floor(rand() * m.length)] = Math.floor(rand() * 256)
    const cut = i % 5 === 0 ? m.subarray(0, Math.floor(rand() * m.length)) : m
    const r = feed(cut, 1 + Math.floor(rand() * 32))
    assertNoCatchAll(r)
    if (r.kind === 'done' && r.sni !== undefined) assert.match(r.sni, /^[a-z0-9._-]+$/)
  }
})

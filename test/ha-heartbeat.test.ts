// Heartbeats over real UDP on 127.0.0.1: signed adverts arrive; unsigned, forged (another secret), replayed
// (a recorded packet sent again, an older boot) and malformed ones are dropped and counted, never delivered.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import dgram from 'node:dgram'
import { once } from 'node:events'
import { HeartbeatChannel, encodeAdvert } from '../ha/heartbeat.js'
import type { PeerAdvert } from '../ha/election.js'

const SECRET = Buffer.from('0123456789abcdef-ha-test')
const ADVERT = { priority: 150, role: 'active', preempt: false, configHash: 'abc123', leaving: false } as const

async function channel (t: TestContext, nodeId: string, secret = SECRET, boot?: number): Promise<{ ch: HeartbeatChannel, got: { advert: PeerAdvert, address: string }[] }> {
  const got: { advert: PeerAdvert, address: string }[] = []
  const ch = new HeartbeatChannel({ nodeId, listen: { host: '127.0.0.1', port: 0 }, secret }, {
    onAdvert: (advert, address) => { got.push({ advert, address }) },
    ...(boot === undefined ? {} : { boot }),
  })
  await ch.start()
  t.after(() => ch.close())
  return { ch, got }
}

/** A plain UDP socket on 127.0.0.1: records what it gets, sends raw bytes. */
async function raw (t: TestContext): Promise<{ socket: dgram.Socket, port: number, packets: Buffer[] }> {
  const socket = dgram.createSocket('udp4')
  const packets: Buffer[] = []
  socket.on('message', m => { packets.push(m) })
  socket.bind(0, '127.0.0.1')
  await once(socket, 'listening')
  t.after(() => { socket.close() })
  return { socket, port: socket.address().port, packets }
}

async function until (what: string, cond: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 5))
  }
}

function sendRaw (socket: dgram.Socket, packet: Buffer, port: number): Promise<void> {
  return new Promise((resolve, reject) => { socket.send(packet, port, '127.0.0.1', err => { if (err) reject(err); else resolve() }) })
}

test('a signed advert arrives with node_id, priority, role, config hash and the sender address', async t => {
  const a = await channel(t, 'edge-a')
  const b = await channel(t, 'edge-b')
  a.ch.send(ADVERT, [{ host: '127.0.0.1', port: b.ch.port }])
  a.ch.send({ ...ADVERT, role: 'passive', leaving: true }, [{ host: '127.0.0.1', port: b.ch.port }])
  await until('two adverts', () => b.got.length === 2)
  assert.deepEqual(b.got[0], { advert: { nodeId: 'edge-a', ...ADVERT }, address: `127.0.0.1:${a.ch.port}` })
  assert.equal(b.got[1]?.advert.leaving, true)
  assert.equal(b.ch.counters.accepted, 2)
  assert.equal(a.ch.counters.sent, 2)
})

test('unsigned, forged, malformed and looped-back packets are dropped and counted', async t => {
  const b = await channel(t, 'edge-b')
  const r = await raw(t)
  await sendRaw(r.socket, Buffer.from('{"n":"edge-x","p":255,"r":"active"}'), b.ch.port) // no signature at all
  const forged = encodeAdvert(Buffer.from('another-secret-of-16+bytes'), { n: 'edge-x', p: 255, r: 'active', e: false, h: '', l: false, b: 1, s: 1 })
  await sendRaw(r.socket, forged, b.ch.port)
  const tampered = encodeAdvert(SECRET, { n: 'edge-x', p: 1, r: 'passive', e: false, h: '', l: false, b: 1, s: 1 })
  tampered.write('255', tampered.indexOf('"p":1') + 4 - 0, 'latin1') // change the priority after signing
  await sendRaw(r.socket, tampered, b.ch.port)
  // Signed but not an advert: a role the election does not know.
  await sendRaw(r.socket, encodeAdvert(SECRET, { n: 'edge-x', p: 1, r: 'boss' as 'active', e: false, h: '', l: false, b: 1, s: 1 }), b.ch.port)
  await sendRaw(r.socket, encodeAdvert(SECRET, { n: 'edge-b', p: 1, r: 'active', e: false, h: '', l: false, b: 1, s: 1 }), b.ch.port)
  await until('five drops', () => Object.values(b.ch.counters.dropped).reduce((x, y) => x + y, 0) === 5)
  assert.deepEqual(b.ch.counters.dropped, { unsigned: 1, bad_signature: 2, replay: 0, malformed: 1, self: 1 })
  assert.equal(b.got.length, 0)
  assert.equal(b.ch.counters.accepted, 0)
})

test('a recorded advert sent again is a replay: dropped; the next fresh one is accepted', async t => {
  const a = await channel(t, 'edge-a')
  const b = await channel(t, 'edge-b')
  const sniff = await raw(t)
  const targets = [{ host: '127.0.0.1', port: b.ch.port }, { host: '127.0.0.1', port: sniff.port }]
  a.ch.send(ADVERT, targets)
  a.ch.send({ ...ADVERT, role: 'passive' }, targets)
  await until('recorded', () => sniff.packets.length === 2 && b.got.length === 2)
  // The attacker replays the first ("active") advert, then the second: both are old sequence numbers.
  await sendRaw(sniff.socket, sniff.packets[0] as Buffer, b.ch.port)
  await sendRaw(sniff.socket, sniff.packets[1] as Buffer, b.ch.port)
  await until('two replays counted', () => b.ch.counters.dropped.replay === 2)
  assert.equal(b.got.length, 2)
  a.ch.send(ADVERT, targets)
  await until('fresh advert', () => b.got.length === 3)
  assert.equal(b.ch.counters.dropped.replay, 2)
})

test('a restarted sender (newer boot) is accepted from sequence 1; an older boot replayed is not', async t => {
  const b = await channel(t, 'edge-b')
  const old = await channel(t, 'edge-a', SECRET, 1000)
  const sniff = await raw(t)
  old.ch.send(ADVERT, [{ host: '127.0.0.1', port: sniff.port }])
  await until('recorded', () => sniff.packets.length === 1)
  const fresh = await channel(t, 'edge-a', SECRET, 2000)
  fresh.ch.send({ ...ADVERT, role: 'init' }, [{ host: '127.0.0.1', port: b.ch.port }])
  await until('fresh boot', () => b.got.length === 1)
  await sendRaw(sniff.socket, sniff.packets[0] as Buffer, b.ch.port) // boot 1000, seq 1: older boot
  await until('replay counted', () => b.ch.counters.dropped.replay === 1)
  assert.equal(b.got.length, 1)
  assert.equal(b.got[0]?.advert.role, 'init')
})

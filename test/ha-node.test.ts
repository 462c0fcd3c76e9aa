// HA nodes on 127.0.0.1 without root: ip_mode = "command" (the hooks are the IP mover), real UDP heartbeats, real
// hook processes. One of two becomes active and runs on_promote with HA_NODE, HA_ROLE, HA_REASON and FLOATING_IP;
// closing it hands over at once (a leaving advert, no dead interval); replenish runs once when spares are short;
// `edge-proxy ha status`, /api/ha, /api/status and /metrics show the role, the peers and the transitions.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import dgram from 'node:dgram'
import { once } from 'node:events'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import pino from 'pino'
import { parseConfigText } from '../config/load.js'
import { HaNode } from '../ha/node.js'
import { configHash } from '../cli/control.js'
import { Replenisher } from '../ha/replenish.js'
import { encodeAdvert } from '../ha/heartbeat.js'
import { runCli, spawnCli, tempDir, waitUntil } from './helpers.js'

async function udpPort (): Promise<number> {
  const s = dgram.createSocket('udp4')
  s.bind(0, '127.0.0.1')
  await once(s, 'listening')
  const port = s.address().port
  await new Promise<void>(resolve => { s.close(() => { resolve() }) })
  return port
}

function haToml (id: string, port: number, peers: number[], priority: number, dir: string, extra = '', deadAfter = 3): string {
  return `[[listeners]]
name = "web"
listen = "127.0.0.1:0"

[ha]
node_id = "${id}"
listen = "127.0.0.1:${port}"
peers = [${peers.map(p => `"127.0.0.1:${p}"`).join(', ')}]
secret = "node-test-secret-0123456789"
priority = ${priority}
advert_interval = "50ms"
dead_after = ${deadAfter}
ip_mode = "command"
floating_ip = "198.18.0.100/24"
on_promote = "echo promote $HA_NODE $HA_ROLE $FLOATING_IP \\"$HA_REASON\\" >> ${join(dir, 'hooks.log')}"
on_demote = "echo demote $HA_NODE $HA_ROLE >> ${join(dir, 'hooks.log')}"
${extra}
`
}

const quiet = pino({ level: 'silent' })

function node (t: TestContext, toml: string, dir: string, events: string[] = []): HaNode {
  const config = parseConfigText(toml, join(dir, 'proxy.toml'))
  const n = new HaNode(config.ha!, { log: quiet, onEvent: (type, message) => { events.push(`${type}: ${message}`) }, configHash: () => 'same' })
  t.after(() => n.close())
  return n
}

async function hookLog (dir: string): Promise<string> {
  return await readFile(join(dir, 'hooks.log'), 'utf8').catch(() => '')
}

test('two nodes: the higher priority promotes (on_promote with the HA_ env), closing it hands over at once', async t => {
  const dir = await tempDir(t)
  const [pa, pb] = [await udpPort(), await udpPort()]
  const eventsA: string[] = []
  const eventsB: string[] = []
  // dead_after 20 (1 s): a hand-over well inside it can only come from the leaving advert.
  const a = node(t, haToml('edge-a', pa, [pb], 150, dir, '', 20), dir, eventsA)
  const b = node(t, haToml('edge-b', pb, [pa], 100, dir, '', 20), dir, eventsB)
  await Promise.all([a.start(), b.start()])
  await waitUntil(() => a.role === 'active' && b.role === 'passive', 5000, 'a active, b passive')
  await waitUntil(async () => (await hookLog(dir)).includes('promote edge-a'), 5000, 'the promote hook')
  assert.match(await hookLog(dir), /^promote edge-a active 198\.18\.0\.100\/24 no active heard during the start-up wait$/m)
  assert.ok(eventsA.some(e => e.startsWith('ha-active: init -> active')), eventsA.join('\n'))
  assert.ok(eventsB.some(e => e.startsWith('ha-passive: init -> passive')), eventsB.join('\n'))

  const st = b.status() as { role: string, holder: string, peers: { node_id: string, role: string, alive: boolean, config_mismatch: boolean }[] }
  assert.equal(st.role, 'passive')
  assert.equal(st.holder, 'edge-a')
  assert.deepEqual(st.peers.map(p => [p.node_id, p.role, p.alive, p.config_mismatch]), [['edge-a', 'active', true, false]])
  assert.match(a.metrics(), /^edge_ha_role\{node="edge-a",role="active"\} 1$/m)
  assert.match(b.metrics(), /^edge_ha_peer_up\{peer="edge-a"\} 1$/m)

  const closedAt = Date.now()
  await a.close()
  await waitUntil(() => b.role === 'active', 2000, 'b to take over')
  const took = Date.now() - closedAt
  assert.ok(took < 700, `b took over ${took}ms after a left (the dead interval is 1 s; a leaving advert needs none)`)
  await waitUntil(async () => /demote edge-a/.test(await hookLog(dir)) && /promote edge-b/.test(await hookLog(dir)), 5000, 'hooks')
  assert.match(await hookLog(dir), /promote edge-b active 198\.18\.0\.100\/24 edge-a left/)
})

test('a config hash mismatch between peers is shown in status and metrics', async t => {
  const dir = await tempDir(t)
  const [pa, pb] = [await udpPort(), await udpPort()]
  const a = node(t, haToml('edge-a', pa, [pb], 150, dir), dir)
  const config = parseConfigText(haToml('edge-b', pb, [pa], 100, dir), join(dir, 'proxy.toml'))
  const b = new HaNode(config.ha!, { log: quiet, onEvent: () => {}, configHash: () => 'other' })
  t.after(() => b.close())
  await Promise.all([a.start(), b.start()])
  await waitUntil(() => (a.status() as { config_mismatch: string[] }).config_mismatch.includes('edge-b'), 3000, 'the mismatch')
  assert.match(a.metrics(), /^edge_ha_config_mismatch\{peer="edge-b"\} 1$/m)
})

test('min_spares = 1: the active runs replenish once when its passive is gone (HA_NODE, HA_SPARES, HA_PEERS), then backs off; a lone first start does not', async t => {
  const dir = await tempDir(t)
  const [pa, pb] = [await udpPort(), await udpPort()]
  const out = join(dir, 'spare.log')
  const events: string[] = []
  const spares = `min_spares = 1\nreplenish = "echo $HA_NODE $HA_SPARES [$HA_PEERS] >> ${out}"`
  const a = node(t, haToml('edge-a', pa, [pb], 150, dir, spares), dir, events)
  await a.start()
  await waitUntil(() => a.role === 'active', 3000, 'active')
  await new Promise(resolve => setTimeout(resolve, 300))
  assert.equal(await readFile(out, 'utf8').catch(() => ''), '', 'alone since its start, with no peer ever heard: nothing to replenish')
  const b = node(t, haToml('edge-b', pb, [pa], 100, dir, spares), dir)
  await b.start()
  await waitUntil(() => b.role === 'passive', 3000, 'b passive')
  assert.equal(await readFile(out, 'utf8').catch(() => ''), '', 'b starting counts as a spare')
  await b.close()
  await waitUntil(async () => (await readFile(out, 'utf8').catch(() => '')) !== '', 3000, 'replenish to run')
  await new Promise(resolve => setTimeout(resolve, 500))
  assert.equal(await readFile(out, 'utf8'), 'edge-a 0 [edge-b]\n', 'one run: it waits for the new passive (backoff) before another')
  const st = a.status() as { replenish: { spares: number, min_spares: number, state: string, runs_total: number } }
  assert.equal(st.replenish.spares, 0)
  assert.equal(st.replenish.state, 'waiting')
  assert.equal(st.replenish.runs_total, 1)
  assert.ok(events.some(e => e.startsWith('ha-replenish: 0 spare(s) of 1')))
})

test('Replenisher: one run at a time, backoff doubles, enough spares or losing the role resets it', async () => {
  let now = 0
  const runs: Record<string, string>[] = []
  let finish: (() => void) | undefined
  const r = new Replenisher(1, {
    baseBackoff: 1000,
    now: () => now,
    run: env => { runs.push(env); return new Promise(resolve => { finish = () => { resolve({ code: 0, stderr: '' }) } }) },
  })
  r.update(now, 'a', true, [], ['b'])
  r.update(now, 'a', true, [], ['b'])
  assert.equal(runs.length, 1, 'one at a time')
  assert.deepEqual(runs[0], { HA_NODE: 'a', HA_SPARES: '0', HA_PEERS: 'b' })
  finish?.()
  await new Promise(resolve => setImmediate(resolve))
  now = 999
  r.update(now, 'a', true, [], [])
  assert.equal(runs.length, 1, 'waits the first backoff (1 s)')
  now = 1000
  r.update(now, 'a', true, [], [])
  assert.equal(runs.length, 2)
  finish?.()
  await new Promise(resolve => setImmediate(resolve))
  now = 2999
  r.update(now, 'a', true, [], [])
  assert.equal(runs.length, 2, 'the second wait is 2 s')
  r.update(now, 'a', true, ['c'], ['c'])
  assert.equal(r.status(now).attempts, 0, 'a spare was heard: reset')
  r.update(now, 'a', true, [], ['c'])
  assert.equal(runs.length, 3, 'short again: runs at once')
  finish?.()
  await new Promise(resolve => setImmediate(resolve))
  r.update(now + 10, 'a', false, [], [])
  assert.equal(r.status(now + 10).attempts, 0, 'not active: nothing to replenish')
})

test('edge-proxy ha status, /api/ha, /api/status and /metrics on a running edge', async t => {
  const dir = await tempDir(t)
  const port = await udpPort()
  const cli = await spawnCli(t, `[ha]
node_id = "solo"
listen = "127.0.0.1:${port}"
secret = "node-test-secret-0123456789"
priority = 42
advert_interval = "50ms"
ip_mode = "command"
on_promote = "echo promoted >> ${join(dir, 'hooks.log')}"
`)
  const admin = `127.0.0.1:${cli.adminPort}`
  await waitUntil(async () => (await hookLog(dir)).includes('promoted'), 5000, 'the node to promote itself')
  const r = await runCli(['ha', 'status', '--admin', admin])
  assert.equal(r.code, 0, r.stderr)
  assert.match(r.stdout, /^node solo: ACTIVE since /m)
  assert.match(r.stdout, /priority 42; IP moved by command; holder: solo/)
  assert.match(r.stdout, /init -> active {2}no active heard during the start-up wait/)
  const j = await runCli(['ha', 'status', '--admin', admin, '--json'])
  assert.equal((JSON.parse(j.stdout) as { role: string }).role, 'active')
  const api = await (await fetch(`http://${admin}/api/ha`)).json() as { node_id: string, transitions: unknown[] }
  assert.equal(api.node_id, 'solo')
  assert.equal(api.transitions.length, 1)
  const st = await (await fetch(`http://${admin}/api/status`)).json() as { ha: { role: string }, events: { type: string }[] }
  assert.equal(st.ha.role, 'active')
  assert.ok(st.events.some(e => e.type === 'ha-active'))
  const metrics = await (await fetch(`http://${admin}/metrics`)).text()
  assert.match(metrics, /^edge_ha_role\{node="solo",role="active"\} 1$/m)
  assert.match(metrics, /^edge_ha_transitions_total 1$/m)
  const usage = await runCli(['ha', 'promote'])
  assert.equal(usage.code, 2)
})

test('edge-proxy ha status on a standalone edge says so and exits 1', async t => {
  const cli = await spawnCli(t, '')
  const r = await runCli(['ha', 'status', '--admin', `127.0.0.1:${cli.adminPort}`])
  assert.equal(r.code, 1)
  assert.match(r.stderr, /404: standalone: no \[ha\] in the config/)
})

test('the config hash peers compare leaves [ha] out (it names the node) and ignores layout, not content', () => {
  const base = '[[listeners]]\nname = "web"\nlisten = "0.0.0.0:8080"\n'
  const a = configHash(`${base}[ha]\nnode_id = "edge-a"\n`)
  const b = configHash(`# node b\n[ha]\nnode_id = "edge-b"\npriority = 1\n\n[[listeners]]\nlisten = "0.0.0.0:8080"\nname = "web"\n`)
  assert.equal(a, b)
  assert.notEqual(configHash(`${base}[pools.app]\nbackends = []\n`), a)
})

test('forged and replayed adverts claiming a better active do not make the active demote; they are counted', async t => {
  const dir = await tempDir(t)
  const [pa, pb] = [await udpPort(), await udpPort()]
  const a = node(t, haToml('edge-a', pa, [pb], 100, dir), dir)
  await a.start()
  await waitUntil(() => a.role === 'active', 3000, 'a active')
  const attacker = dgram.createSocket('udp4')
  attacker.bind(0, '127.0.0.1')
  await once(attacker, 'listening')
  t.after(() => { attacker.close() })
  const send = (b: Buffer): Promise<void> => new Promise((resolve, reject) => { attacker.send(b, pa, '127.0.0.1', e => { if (e) reject(e); else resolve() }) })
  // Forged: a node "edge-0" with priority 255, active, signed with a guessed key; and an unsigned one.
  await send(encodeAdvert(Buffer.from('guessed-secret-0123456789'), { n: 'edge-0', p: 255, r: 'active', e: false, h: '', l: false, b: Date.now(), s: 1 }))
  await send(Buffer.from('{"n":"edge-0","p":255,"r":"active"}'))
  await new Promise(resolve => setTimeout(resolve, 100))
  assert.equal(a.role, 'active', 'the forged ones changed nothing')
  // Replayed: a real node edge-z (priority 255) is active, so a demotes; edge-z leaves, so a is active again; then
  // an attacker sends edge-z's recorded "active" advert again.
  const secret = Buffer.from('node-test-secret-0123456789')
  const boot = Date.now()
  const old = encodeAdvert(secret, { n: 'edge-z', p: 255, r: 'active', e: false, h: 'same', l: false, b: boot, s: 5 })
  await send(old)
  await waitUntil(() => a.role === 'passive', 2000, 'a to demote before the real better active')
  await send(encodeAdvert(secret, { n: 'edge-z', p: 255, r: 'passive', e: false, h: 'same', l: true, b: boot, s: 6 }))
  await waitUntil(() => a.role === 'active', 2000, 'a active again once edge-z left')
  await send(old)
  await waitUntil(() => {
    const d = (a.status() as { heartbeats: { dropped: Record<string, number> } }).heartbeats.dropped
    return d.bad_signature === 1 && d.unsigned === 1 && d.replay === 1
  }, 3000, 'the drops to be counted')
  await new Promise(resolve => setTimeout(resolve, 200))
  assert.equal(a.role, 'active')
  assert.match(a.metrics(), /^edge_ha_adverts_received_total\{result="replay"\} 1$/m)
  const peers = (a.status() as { peers: { node_id: string }[] }).peers.map(p => p.node_id)
  assert.deepEqual(peers, ['edge-z'], 'the forged node was never a peer')
})

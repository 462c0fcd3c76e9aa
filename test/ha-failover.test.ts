// Real failover in network namespaces the test builds (a bridge, node A, node B, a client with the backend; all in
// 198.18.0.0/24 inside the namespaces): two edge-proxy processes with an [ha] block, advert_interval 200ms. Killing
// the active's serving process (kill -9) moves the floating IP to the passive within seconds, the client's longest
// gap is measured, the IP is never on both nodes in any sample, and the old active comes back passive
// (preempt = false) and takes the IP again only when the other dies. Skips only where the kernel refuses namespaces.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { chmod, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CLI, childrenOf, haStatus, makeLab, nodeToml, sampleHolders, sleep, startBackend, startClient, startNode, waitFor, type Lab } from './ha-netns-util.js'

const A = { id: 'edge-a', ip: '198.18.0.1', peers: ['198.18.0.2'], priority: 150 }
const B = { id: 'edge-b', ip: '198.18.0.2', peers: ['198.18.0.1'], priority: 100 }

async function servingPid (supervisor: number): Promise<number> {
  let pid = 0
  await waitFor('the serving process', async () => { pid = (await childrenOf(supervisor))[0] ?? 0; return pid !== 0 }, 10_000)
  return pid
}

async function role (lab: Lab, host: string): Promise<string | undefined> {
  return (await haStatus(lab, host))?.role
}

test('kill -9 of the active: the passive holds the floating IP within seconds, never both, and preempt = false keeps it there', { timeout: 120_000 }, async t => {
  const lab = await makeLab(t, { a: A.ip, b: B.ip, c: '198.18.0.10' })
  if (lab === undefined) { t.skip('the kernel refused to create a network namespace (ip netns add): HA failover needs root and netns'); return }
  startBackend(lab, 'c')
  const a = await startNode(lab, 'a', A)
  await waitFor('A (priority 150) to hold the floating IP', () => lab.holds('a'), 15_000)
  const b = await startNode(lab, 'b', B)
  await waitFor('B to come up passive', async () => await role(lab, 'b') === 'passive', 15_000)
  assert.equal(await lab.holds('b'), false)
  assert.equal(await role(lab, 'a'), 'active')

  const client = await startClient(lab, 'c')
  const sampler = sampleHolders(lab, ['a', 'b'])
  await sleep(1000)

  // Kill -9 A's serving process (its supervisor lets the IP go and starts a new one, which comes back passive).
  const killedAt = Date.now()
  process.kill(await servingPid(a.pid as number), 'SIGKILL')
  const tookOver = await waitFor('B to hold the floating IP', () => lab.holds('b'), 10_000)
  t.diagnostic(`B held the floating IP ${Date.now() - killedAt}ms after the kill (${tookOver}ms of polling)`)
  await waitFor('A to come back passive', async () => await role(lab, 'a') === 'passive', 15_000)
  await sleep(2000)
  const report = await client.stop()
  t.diagnostic(`client: ${report.ok} ok, ${report.failed} failed, longest gap ${report.maxGapMs}ms; ${report.notes.join('; ')}`)

  // preempt = false: A (higher priority) stays passive, B keeps the IP.
  assert.equal(await role(lab, 'b'), 'active')
  assert.equal(await role(lab, 'a'), 'passive')
  assert.equal(await lab.holds('a'), false)
  assert.equal(await lab.holds('b'), true)
  assert.ok(Date.now() - killedAt < 30_000)
  assert.ok(report.maxGapMs < 1500, `the client's longest gap was ${report.maxGapMs}ms (must stay under 1.5 s at advert 200ms)`)
  assert.ok(report.ok > 50, `the client got ${report.ok} answers`)

  // A takes the IP again only when B dies.
  const client2 = await startClient(lab, 'c')
  process.kill(await servingPid(b.pid as number), 'SIGKILL')
  await waitFor('A to hold the floating IP again', () => lab.holds('a'), 10_000)
  await waitFor('B to come back passive', async () => await role(lab, 'b') === 'passive', 15_000)
  const report2 = await client2.stop()
  t.diagnostic(`second failover: client ${report2.ok} ok, ${report2.failed} failed, longest gap ${report2.maxGapMs}ms`)
  const samples = await sampler.stop()
  t.diagnostic(`${samples.samples} address samples of both namespaces`)
  assert.equal(samples.both, 0, `the floating IP was on both nodes: ${samples.log.join(', ')}`)
  assert.ok(samples.samples > 50)
  assert.ok(report2.maxGapMs < 1500, `second failover gap ${report2.maxGapMs}ms`)
  const st = await haStatus(lab, 'a') as { transitions: unknown[], config_mismatch: string[] } | undefined
  assert.ok(st !== undefined && st.transitions.length >= 2)
  assert.deepEqual(st.config_mismatch, [], 'the two configs differ only in [ha]')
})

test('preempt = true: a returning higher-priority node takes over cleanly (the active yields first, never both)', { timeout: 120_000 }, async t => {
  const lab = await makeLab(t, { a: A.ip, b: B.ip, c: '198.18.0.10' })
  if (lab === undefined) { t.skip('the kernel refused to create a network namespace (ip netns add): HA failover needs root and netns'); return }
  startBackend(lab, 'c')
  await startNode(lab, 'b', { ...B, preempt: true })
  await waitFor('B alone to hold the floating IP', () => lab.holds('b'), 15_000)
  const client = await startClient(lab, 'c')
  const sampler = sampleHolders(lab, ['a', 'b'])
  const startedAt = Date.now()
  await startNode(lab, 'a', { ...A, preempt: true })
  await waitFor('A to take the floating IP over', () => lab.holds('a'), 15_000)
  t.diagnostic(`A held the floating IP ${Date.now() - startedAt}ms after it was started`)
  await waitFor('B to be passive', async () => await role(lab, 'b') === 'passive', 10_000)
  await sleep(1000)
  const report = await client.stop()
  const samples = await sampler.stop()
  t.diagnostic(`client: ${report.ok} ok, ${report.failed} failed, longest gap ${report.maxGapMs}ms; ${samples.samples} samples`)
  assert.equal(samples.both, 0, `the floating IP was on both nodes: ${samples.log.join(', ')}`)
  assert.equal(await lab.holds('b'), false)
  assert.equal(await role(lab, 'a'), 'active')
  assert.ok(report.maxGapMs < 1500, `the hand-over cost the client ${report.maxGapMs}ms`)
})

test('a partition (B cut off from A and the witness) leaves B without the IP; healed, B is passive again', { timeout: 120_000 }, async t => {
  const lab = await makeLab(t, { a: A.ip, b: B.ip, c: '198.18.0.10' })
  if (lab === undefined) { t.skip('the kernel refused to create a network namespace (ip netns add): HA failover needs root and netns'); return }
  startBackend(lab, 'c')
  const witness = 'witness = "198.18.0.10:80"'
  await startNode(lab, 'a', { ...A, extra: witness })
  await waitFor('A to hold the floating IP', () => lab.holds('a'), 15_000)
  await startNode(lab, 'b', { ...B, extra: witness })
  await waitFor('B to come up passive', async () => await role(lab, 'b') === 'passive', 15_000)
  const sampler = sampleHolders(lab, ['a', 'b'])
  await lab.link('b', false)
  await waitFor('B to be in fault (witness unreachable)', async () => await role(lab, 'b') === 'fault', 10_000)
  await sleep(2000)
  const during = await sampler.stop()
  assert.equal(await lab.holds('b'), false)
  assert.equal(await lab.holds('a'), true)
  const st = await haStatus(lab, 'b') as { reason: string } | undefined
  assert.match(st?.reason ?? '', /witness unreachable/)
  const healed = sampleHolders(lab, ['a', 'b'])
  await lab.link('b', true)
  await waitFor('B to be passive again', async () => await role(lab, 'b') === 'passive', 10_000)
  await sleep(1000)
  const after = await healed.stop()
  assert.equal(during.both + after.both, 0, `the floating IP was on both nodes: ${[...during.log, ...after.log].join(', ')}`)
  assert.equal(await role(lab, 'a'), 'active')
  assert.equal(await lab.holds('b'), false)
})

test('three nodes: killing the active leaves exactly one active (by priority), the third stays passive, next in line', { timeout: 120_000 }, async t => {
  const lab = await makeLab(t, { a: A.ip, b: B.ip, d: '198.18.0.3', c: '198.18.0.10' })
  if (lab === undefined) { t.skip('the kernel refused to create a network namespace (ip netns add): HA failover needs root and netns'); return }
  startBackend(lab, 'c')
  const all = ['198.18.0.1', '198.18.0.2', '198.18.0.3']
  const others = (ip: string): string[] => all.filter(x => x !== ip)
  const a = await startNode(lab, 'a', { ...A, peers: others(A.ip) })
  await waitFor('A to hold the floating IP', () => lab.holds('a'), 15_000)
  await startNode(lab, 'b', { ...B, priority: 120, peers: others(B.ip) })
  await startNode(lab, 'd', { id: 'edge-d', ip: '198.18.0.3', priority: 100, peers: others('198.18.0.3') })
  await waitFor('B and D passive', async () => await role(lab, 'b') === 'passive' && await role(lab, 'd') === 'passive', 15_000)
  const sampler = sampleHolders(lab, ['a', 'b', 'd'])
  process.kill(await servingPid(a.pid as number), 'SIGKILL')
  await waitFor('B (priority 120) to hold the floating IP', () => lab.holds('b'), 10_000)
  await waitFor('A back, passive', async () => await role(lab, 'a') === 'passive', 15_000)
  await sleep(1500)
  const samples = await sampler.stop()
  assert.equal(samples.both, 0, `the floating IP was on two nodes: ${samples.log.join(', ')}`)
  const roles = [await role(lab, 'a'), await role(lab, 'b'), await role(lab, 'd')]
  assert.deepEqual(roles, ['passive', 'active', 'passive'])
  assert.equal(await lab.holds('d'), false)
})

test('min_spares = 1: when the active dies the survivor runs replenish, and the new node is heard as passive within 10 s', { timeout: 120_000 }, async t => {
  const lab = await makeLab(t, { a: A.ip, b: B.ip, d: '198.18.0.4', c: '198.18.0.10' })
  if (lab === undefined) { t.skip('the kernel refused to create a network namespace (ip netns add): HA failover needs root and netns'); return }
  startBackend(lab, 'c')
  const spareToml = join(lab.dir, 'edge-d.toml')
  await writeFile(spareToml, nodeToml({ id: 'edge-d', ip: '198.18.0.4', priority: 50, peers: [A.ip, B.ip] }))
  const script = join(lab.dir, 'start-spare.sh')
  await writeFile(script, `#!/bin/sh
echo "$HA_NODE $HA_SPARES $HA_PEERS" >> ${join(lab.dir, 'replenish.log')}
setsid ip netns exec ${lab.ns('d')} ${process.execPath} ${CLI} --config ${spareToml} > ${join(lab.dir, 'edge-d.log')} 2>&1 < /dev/null &
`)
  await chmod(script, 0o755)
  const spares = `min_spares = 1\nreplenish = "${script}"`
  await startNode(lab, 'a', { ...A, extra: spares })
  await waitFor('A to hold the floating IP', () => lab.holds('a'), 15_000)
  await startNode(lab, 'b', { ...B, extra: spares })
  await waitFor('B passive', async () => await role(lab, 'b') === 'passive', 15_000)
  // A's host dies: its processes and its namespace (and the address on it) are gone.
  const diedAt = Date.now()
  await lab.destroy('a')
  await waitFor('B to hold the floating IP', () => lab.holds('b'), 10_000)
  const heard = await waitFor('the spare to be heard as passive', async () => {
    const st = await haStatus(lab, 'b')
    return st?.peers.some(p => p.node_id === 'edge-d' && p.role === 'passive') === true
  }, 10_000).catch(async (err: Error) => {
    const files = await Promise.all(['replenish.log', 'edge-d.log'].map(f => readFile(join(lab.dir, f), 'utf8').catch(e => String(e))))
    throw new Error(`${err.message}; replenish.log: ${files[0]}; edge-d.log: ${files[1]?.slice(-2000)}; B: ${JSON.stringify(await haStatus(lab, 'b'))}`)
  })
  t.diagnostic(`the spare was heard as passive ${Date.now() - diedAt}ms after A died (${heard}ms after B took over)`)
  const log = await readFile(join(lab.dir, 'replenish.log'), 'utf8')
  assert.deepEqual(log.trim().split('\n'), ['edge-b 0 edge-a'], 'B ran replenish once, with HA_NODE, HA_SPARES and HA_PEERS (A counted dead but known)')
  assert.equal(await role(lab, 'd'), 'passive')
})

// Real failover in network namespaces the test builds (a bridge, node A, node B, a client with the backend; all in
// 198.18.0.0/24 inside the namespaces): two edge-proxy processes with an [ha] block, advert_interval 200ms. Killing
// the active's serving process (kill -9) moves the floating IP to the passive within seconds, the client's longest
// gap is measured, the IP is never on both nodes in any sample, and the old active comes back passive
// (preempt = false) and takes the IP again only when the other dies. Skips only where the kernel refuses namespaces.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { sh, childrenOf, haStatus, makeLab, sampleHolders, sleep, startBackend, startClient, startNode, waitFor, type Lab } from './ha-netns-util.js'

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
  if (process.env.HA_DEBUG === '1') {
    for (let i = 0; i < 15; i++) {
      const n = await sh('ip', ['-n', lab.ns('c'), 'neigh'])
      const ps = await sh('pgrep', ['-a', 'arping'])
      t.diagnostic(`${Date.now() - killedAt}ms neigh ${n.stdout.replace(/\n/g, ' | ')} arping: ${ps.stdout.trim()}`)
      await sleep(200)
    }
  }
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
  const st = await haStatus(lab, 'a')
  assert.ok(st !== undefined && st.transitions.length >= 2)
})

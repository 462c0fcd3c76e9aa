// `node dist/bench/ha.js [N]`: edge-proxy HA against Debian's keepalived (VRRPv3), side by side, in the same
// network namespaces (test/ha-netns-util.ts: a bridge, nodes A and B, a client with the backend), the same advert
// interval (200 ms), the same kill -9 of the process that holds the role, the same client loop (a new connection
// every 20 ms). N failovers each (default 10), alternating A -> B -> A: median and max client-visible gap, and
// whether any `ip addr` sample showed the IP on both nodes. Needs root (ip netns); says so and exits 0 otherwise.
import { spawnSync } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CLI, nodeToml, childrenOf, FLOATING, killTree, makeLab, outputOf, procs, sampleHolders, sleep, spawnIn, startBackend, startClient, startNode, waitFor, type Lab } from '../test/ha-netns-util.js'
import type { ChildProcess } from 'node:child_process'

const ADVERT_MS = 200
const IPS = { a: '198.18.0.1', b: '198.18.0.2' } as const

interface Result { readonly name: string, readonly gaps: number[], readonly both: number, readonly samples: number }

function say (line: string): void { process.stderr.write(`${line}\n`) }

function keepalivedConf (host: 'a' | 'b', priority: number): string {
  return `global_defs {
  vrrp_version 3
  script_user root
  enable_script_security
  vrrp_garp_master_delay 5
  vrrp_garp_master_repeat 5
}
vrrp_instance VI_1 {
  state BACKUP
  nopreempt
  interface veth0
  virtual_router_id 51
  priority ${priority}
  advert_int ${ADVERT_MS / 1000}
  unicast_src_ip ${IPS[host]}
  unicast_peer { ${host === 'a' ? IPS.b : IPS.a} }
  virtual_ipaddress { ${FLOATING}/24 dev veth0 }
}
`
}

/** keepalived moves the IP; a plain edge-proxy (no [ha]) serves on each node, as nginx would beside keepalived. */
async function startKeepalived (lab: Lab, host: 'a' | 'b', priority: number): Promise<ChildProcess> {
  const plain = join(lab.dir, `plain-${host}.toml`)
  await writeFile(plain, nodeToml({ id: host, ip: IPS[host], peers: [], priority }).replace(/\[ha\][\s\S]*$/, ''))
  spawnIn(lab.ns(host), [process.execPath, CLI, '--config', plain], {}, join(lab.dir, `plain-${host}.log`))
  const conf = join(lab.dir, `keepalived-${host}.conf`)
  await writeFile(conf, keepalivedConf(host, priority))
  return spawnIn(lab.ns(host), ['keepalived', '--vrrp', '-n', '-l', '-D', '-f', conf, '-p', join(lab.dir, `ka-${host}.pid`), '-r', join(lab.dir, `ka-${host}-vrrp.pid`)], {}, join(lab.dir, `keepalived-${host}.log`))
}

/** The process that holds the role: edge-proxy's serving child, keepalived's VRRP child. */
async function roleProcess (top: ChildProcess): Promise<number> {
  let pid = 0
  await waitFor('the role process', async () => { pid = (await childrenOf(top.pid as number))[0] ?? 0; return pid !== 0 }, 10_000)
  return pid
}

async function run (name: string, n: number, start: (lab: Lab, host: 'a' | 'b', priority: number) => Promise<ChildProcess>): Promise<Result> {
  const cleanups: (() => Promise<void> | void)[] = []
  try {
    const lab = await makeLab({ after: fn => { cleanups.push(fn as () => Promise<void>) } }, { a: IPS.a, b: IPS.b, c: '198.18.0.10' })
    if (lab === undefined) throw new Error('the kernel refused to create a network namespace')
    startBackend(lab, 'c')
    const nodes = { a: await start(lab, 'a', 150), b: undefined as ChildProcess | undefined }
    await waitFor(`${name}: A to hold the IP`, () => lab.holds('a'), 20_000)
    nodes.b = await start(lab, 'b', 100)
    await sleep(3000)
    const gaps: number[] = []
    let both = 0
    let samples = 0
    let holder: 'a' | 'b' = 'a'
    for (let i = 0; i < n; i++) {
      const other: 'a' | 'b' = holder === 'a' ? 'b' : 'a'
      const client = await startClient(lab, 'c')
      const sampler = sampleHolders(lab, ['a', 'b'])
      await sleep(500)
      process.kill(await roleProcess(nodes[holder] as ChildProcess), 'SIGKILL')
      await waitFor(`${name}: ${other} to hold the IP`, () => lab.holds(other), 20_000)
      await sleep(1500)
      const r = await client.stop()
      const s = await sampler.stop()
      gaps.push(r.maxGapMs)
      both += s.both
      samples += s.samples
      say(`${name} failover ${i + 1}/${n} ${holder} -> ${other}: gap ${r.maxGapMs} ms${s.both > 0 ? `, IP on both nodes in ${s.both} sample(s)` : ''}`)
      holder = other
      await sleep(2500) // the killed side is restarted (supervisor / keepalived parent) and settles as backup
    }
    for (const p of Object.values(nodes)) if (p !== undefined) killTree(p)
    return { name, gaps, both, samples }
  } catch (err) {
    if (process.env.BENCH_HA_DEBUG === '1') for (const p of procs) say(`${p.spawnargs.slice(3).join(' ').slice(0, 100)}\n${outputOf(p).slice(-1500)}`)
    throw err
  } finally {
    for (const c of cleanups.reverse()) await c()
  }
}

function median (xs: readonly number[]): number {
  const s = [...xs].sort((x, y) => x - y)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] as number : ((s[m - 1] as number) + (s[m] as number)) / 2
}

async function main (): Promise<void> {
  const n = Number(process.argv[2] ?? 10)
  if (process.getuid?.() !== 0) { say('bench/ha: needs root (ip netns); skipped'); return }
  const results: Result[] = []
  results.push(await run('edge-proxy', n, (lab, host, priority) => startNode(lab, host, { id: `edge-${host}`, ip: IPS[host], peers: [host === 'a' ? IPS.b : IPS.a], priority })))
  if (spawnSync('keepalived', ['--version']).status === 0) results.push(await run('keepalived', n, startKeepalived))
  else say('bench/ha: keepalived is not installed; only edge-proxy measured')
  const lines = [
    `| ${n} failovers, advert 200 ms, kill -9 | median gap | max gap | IP on two nodes |`,
    '|---|---|---|---|',
    ...results.map(r => `| ${r.name} | ${median(r.gaps)} ms | ${Math.max(...r.gaps)} ms | ${r.both === 0 ? `never (${r.samples} samples)` : `${r.both} of ${r.samples} samples`} |`),
  ]
  process.stdout.write(`${lines.join('\n')}\n`)
}

await main()

// A small network in namespaces the test makes itself, for the HA failover tests: a bridge namespace with br0 and,
// per host, a namespace joined to it by a veth pair (veth0 inside, 198.18.0.0/24 addresses). The edge nodes run as
// real `edge-proxy` processes through `ip netns exec`. Run as a script (`node ha-netns-util.js backend|client ...`)
// it is the backend and the client loop inside the client namespace. Everything is removed in t.after().
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import http from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { TestContext } from 'node:test'

export const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url))
const SELF = fileURLToPath(import.meta.url)

export const FLOATING = '198.18.0.100'
export const BACKEND_IP = '198.18.0.10'

export function sh (file: string, args: readonly string[], timeoutMs = 10_000): Promise<{ code: number, stdout: string, stderr: string }> {
  return new Promise(resolve => {
    execFile(file, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout: String(stdout), stderr: String(stderr) })
    })
  })
}

async function must (args: readonly string[]): Promise<string> {
  const r = await sh('ip', args)
  if (r.code !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim()}`)
  return r.stdout
}

export function sleep (ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms))
}

export interface Lab {
  /** Namespace name of a host ("a", "b", "c" ...). */
  ns (host: string): string
  readonly dir: string
  /** Whether the floating IP is on host's veth0 now. */
  holds (host: string): Promise<boolean>
  /** Adds a host namespace on the bridge with this address. */
  addHost (host: string, ip: string): Promise<void>
  /** Takes a host's link off the bridge (a partition) or puts it back. */
  link (host: string, up: boolean): Promise<void>
  /** The host dies: every process in it is killed and its namespace (and with it its addresses) removed. */
  destroy (host: string): Promise<void>
}

/**
 * Makes the bridge namespace and the hosts; resolves undefined when the kernel refuses namespaces (the test then
 * skips, saying so). Every namespace and process is gone after the test.
 */
export async function makeLab (t: Pick<TestContext, 'after'>, hosts: Record<string, string>): Promise<Lab | undefined> {
  const tag = `eph${process.pid % 100000}${Math.floor(Math.random() * 1000)}`
  const made: string[] = []
  const dir = await mkdtemp(join(tmpdir(), 'edge-ha-'))
  t.after(async () => {
    for (const p of procs.splice(0)) killTree(p)
    // Whatever else runs in them (a spare a replenish hook started in its own session).
    for (const n of made) {
      const pids = (await sh('ip', ['netns', 'pids', n])).stdout.trim().split(/\s+/).filter(Boolean).map(Number)
      for (const pid of pids) { try { process.kill(pid, 'SIGKILL') } catch { /* gone */ } }
    }
    await sleep(100)
    for (const n of made.reverse()) await sh('ip', ['netns', 'del', n])
    await rm(dir, { recursive: true, force: true })
  })
  const br = `${tag}br`
  const probe = await sh('ip', ['netns', 'add', br])
  if (probe.code !== 0) {
    if (/Operation not permitted|Permission denied|not supported/i.test(probe.stderr)) return undefined
    throw new Error(`ip netns add: ${probe.stderr.trim()}`)
  }
  made.push(br)
  await must(['-n', br, 'link', 'add', 'br0', 'type', 'bridge'])
  await must(['-n', br, 'link', 'set', 'br0', 'up'])
  const lab: Lab = {
    dir,
    ns: host => `${tag}${host}`,
    async holds (host) {
      const r = await sh('ip', ['-n', lab.ns(host), '-4', '-o', 'addr', 'show', 'dev', 'veth0'])
      return r.stdout.includes(` ${FLOATING}/`)
    },
    async addHost (host, ip) {
      const ns = lab.ns(host)
      await must(['netns', 'add', ns])
      made.push(ns)
      const outer = `v${tag}${host}`.slice(-15)
      await must(['link', 'add', outer, 'type', 'veth', 'peer', 'name', 'veth0', 'netns', ns])
      await must(['link', 'set', outer, 'netns', br])
      await must(['-n', br, 'link', 'set', outer, 'master', 'br0', 'up'])
      await must(['-n', ns, 'link', 'set', 'lo', 'up'])
      await must(['-n', ns, 'link', 'set', 'veth0', 'up'])
      await must(['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', 'veth0'])
    },
    async destroy (host) {
      const ns = lab.ns(host)
      const pids = (await sh('ip', ['netns', 'pids', ns])).stdout.trim().split(/\s+/).filter(Boolean).map(Number)
      for (const pid of pids) { try { process.kill(pid, 'SIGKILL') } catch { /* gone */ } }
      await sleep(50)
      await must(['netns', 'del', ns])
      made.splice(made.indexOf(ns), 1)
    },
    async link (host, up) {
      await must(['-n', br, 'link', 'set', `v${tag}${host}`.slice(-15), up ? 'up' : 'down'])
    },
  }
  for (const [host, ip] of Object.entries(hosts)) await lab.addHost(host, ip)
  return lab
}

const procs: ChildProcess[] = []

/** Starts `args` inside a namespace as its own process group (so the whole tree can be killed). */
export function spawnIn (ns: string, args: readonly string[], env: Record<string, string>, logFile: string): ChildProcess {
  const c = spawn('ip', ['netns', 'exec', ns, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  const chunks: Buffer[] = []
  c.stdout?.on('data', (b: Buffer) => { chunks.push(b) })
  c.stderr?.on('data', (b: Buffer) => { chunks.push(b) })
  c.on('exit', () => { void writeFile(logFile, Buffer.concat(chunks)).catch(() => {}) })
  ;(c as ChildProcess & { output?: () => string }).output = () => Buffer.concat(chunks).toString()
  procs.push(c)
  return c
}

export { procs }

export function outputOf (c: ChildProcess): string {
  return (c as ChildProcess & { output?: () => string }).output?.() ?? ''
}

export function killTree (c: ChildProcess): void {
  if (c.pid === undefined || c.exitCode !== null || c.signalCode !== null) return
  try { process.kill(-c.pid, 'SIGKILL') } catch { /* gone */ }
}

/** Direct children of a pid (the supervisor's serving process). */
export async function childrenOf (pid: number): Promise<number[]> {
  try {
    const text = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8')
    return text.trim().split(/\s+/).filter(Boolean).map(Number)
  } catch {
    return []
  }
}

export interface NodeSpec {
  readonly id: string
  readonly ip: string
  readonly peers: readonly string[]
  readonly priority: number
  readonly preempt?: boolean
  readonly extra?: string
}

export const SECRET = 'ha-netns-test-secret-0123456789'

export function nodeToml (n: NodeSpec): string {
  return `[admin]
listen = "127.0.0.1:9901"

[log]
access = "off"
level = "info"

[[listeners]]
name = "web"
listen = "0.0.0.0:8080"

[[routes]]
pool = "app"

[pools.app]
backends = ["http://${BACKEND_IP}:8080"]

[ha]
node_id = "${n.id}"
listen = "${n.ip}:7946"
peers = [${n.peers.map(p => `"${p}:7946"`).join(', ')}]
secret = "env:EDGE_HA_SECRET"
priority = ${n.priority}
preempt = ${n.preempt === true ? 'true' : 'false'}
advert_interval = "200ms"
dead_after = 3
floating_ip = "${FLOATING}/24"
interface = "veth0"
${n.extra ?? ''}
`
}

export async function startNode (lab: Lab, host: string, n: NodeSpec): Promise<ChildProcess> {
  const file = join(lab.dir, `${n.id}.toml`)
  await writeFile(file, nodeToml(n))
  return spawnIn(lab.ns(host), [process.execPath, CLI, '--config', file], { EDGE_HA_SECRET: SECRET }, join(lab.dir, `${n.id}.log`))
}

/** `edge-proxy ha status --json` inside a namespace, parsed; undefined when it does not answer. */
export async function haStatus (lab: Lab, host: string): Promise<{ role: string, peers: { node_id: string, role: string }[], transitions: unknown[] } | undefined> {
  const r = await sh('ip', ['netns', 'exec', lab.ns(host), process.execPath, CLI, 'ha', 'status', '--admin', '127.0.0.1:9901', '--json'])
  if (r.code !== 0) return undefined
  try { return JSON.parse(r.stdout) } catch { return undefined }
}

export async function waitFor (what: string, cond: () => Promise<boolean>, ms: number): Promise<number> {
  const start = Date.now()
  for (;;) {
    if (await cond()) return Date.now() - start
    if (Date.now() - start > ms) throw new Error(`timed out after ${ms}ms waiting for ${what}`)
    await sleep(25)
  }
}

/** Samples both nodes' addresses until stopped; `both` counts samples where both held the IP. */
export function sampleHolders (lab: Lab, hosts: readonly string[]): { stop: () => Promise<{ samples: number, both: number, log: string[] }> } {
  let running = true
  let samples = 0
  let both = 0
  const log: string[] = []
  const loop = (async () => {
    while (running) {
      const held = await Promise.all(hosts.map(h => lab.holds(h)))
      samples++
      const holders = hosts.filter((_, i) => held[i])
      if (holders.length > 1) { both++; log.push(`${new Date().toISOString()} ${holders.join('+')}`) }
      await sleep(20)
    }
  })()
  return { stop: async () => { running = false; await loop; return { samples, both, log } } }
}

/** The client loop's result: the longest time between two successful requests, and the counts. */
export interface ClientReport { readonly ok: number, readonly failed: number, readonly maxGapMs: number, readonly notes: readonly string[] }

let clients = 0

/** Starts the backend and the client loop in the client namespace; stop() ends the loop and reads its report. */
export async function startClient (lab: Lab, host: string): Promise<{ stop: () => Promise<ClientReport> }> {
  const n = ++clients
  const report = join(lab.dir, `client-${n}.json`)
  const stopFile = join(lab.dir, `client-${n}.stop`)
  const c = spawnIn(lab.ns(host), [process.execPath, SELF, 'client', `http://${FLOATING}:8080/`, report, stopFile], {}, join(lab.dir, `client-${n}.log`))
  await waitFor('the client loop to answer', async () => outputOf(c).includes('first ok'), 10_000)
  return {
    stop: async () => {
      await writeFile(stopFile, '')
      await waitFor('the client report', async () => c.exitCode !== null, 5000)
      return JSON.parse(await readFile(report, 'utf8')) as ClientReport
    },
  }
}

export function startBackend (lab: Lab, host: string): ChildProcess {
  return spawnIn(lab.ns(host), [process.execPath, SELF, 'backend', BACKEND_IP], {}, join(lab.dir, 'backend.log'))
}

// ---------------------------------------------------------------- run as a script inside a namespace

async function clientLoop (url: string, reportFile: string, stopFile: string): Promise<void> {
  let ok = 0
  let failed = 0
  let lastOk = 0
  let maxGap = 0
  let said = false
  const notes: string[] = []
  const agent = new http.Agent({ keepAlive: false })
  // Bounded: stops on the stop file, or after 10 minutes whatever happens.
  const end = Date.now() + 600_000
  while (Date.now() < end) {
    const started = Date.now()
    const good = await new Promise<boolean>(resolve => {
      const req = http.get(url, { agent, timeout: 250 }, res => {
        res.resume()
        res.on('end', () => { if (res.statusCode !== 200) notes.push(`${started % 100000} status ${res.statusCode}`); resolve(res.statusCode === 200) })
        res.on('error', () => { resolve(false) })
      })
      req.on('timeout', () => { req.destroy(new Error('timeout')) })
      req.on('error', err => { notes.push(`${started % 100000} ${Date.now() - started}ms ${err.message}`); resolve(false) })
    })
    const now = Date.now()
    if (good) {
      if (lastOk !== 0) maxGap = Math.max(maxGap, now - lastOk)
      lastOk = now
      ok++
      if (!said) { said = true; process.stdout.write('first ok\n') }
    } else if (lastOk !== 0) {
      failed++
      maxGap = Math.max(maxGap, now - lastOk)
    }
    try { await readFile(stopFile); break } catch { /* keep going */ }
    await sleep(20)
  }
  await writeFile(reportFile, JSON.stringify({ ok, failed, maxGapMs: maxGap, notes: notes.slice(0, 30) }))
}

function backend (ip: string): void {
  http.createServer((_req, res) => { res.end('ok') }).listen(8080, ip)
  // The witness the nodes probe (a TCP connect).
  http.createServer((_req, res) => { res.end('witness') }).listen(80, ip)
}

if (process.argv[1] === SELF) {
  const [mode, a, b, c] = process.argv.slice(2)
  if (mode === 'client') void clientLoop(a as string, b as string, c as string)
  else if (mode === 'backend') backend(a as string)
}

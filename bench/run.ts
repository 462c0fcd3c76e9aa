// `npm run bench`: starts one backend and every available target, measures each scenario round-robin over the
// targets (A B C A B C ...), writes bench/results/<date>.json and prints a markdown table. See bench/README.md.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Children, freePorts, waitForHttp } from './procs.js'
import { findExecutable, machine, packageVersion, versionOf } from './machine.js'
import { parseOptions, USAGE, type BenchOptions } from './options.js'
import { SCENARIOS, selected, toolFor, type Scenario } from './scenarios.js'
import { allTargets, type Running, type Target, type TlsFiles } from './targets.js'
import { measureIdle, runRound, warmUp } from './measure.js'
import { peerTargets, markdown, summarize, targetsMarkdown, type Cell, type IdleResult, type SoakResult } from './report.js'
import { runSoak } from './soak.js'
import type { LoadContext } from './load/index.js'
import { createLocalPki } from '../proxy/tls/demo-certs.js'

function say (line: string): void { process.stderr.write(`${line}\n`) }
const message = (err: unknown): string => err instanceof Error ? err.message : String(err)

/** A throwaway CA and a certificate for localhost / 127.0.0.1, in the run's temp dir. */
async function makeTls (dir: string): Promise<TlsFiles> {
  const pki = await createLocalPki(['localhost', '127.0.0.1'], { days: 2, caName: 'edge-proxy bench CA' })
  const tdir = join(dir, 'tls')
  await mkdir(tdir, { recursive: true })
  const files = { ca: join(tdir, 'ca.pem'), cert: join(tdir, 'cert.pem'), key: join(tdir, 'key.pem'), pem: join(tdir, 'cert-and-key.pem'), servername: 'localhost' }
  await writeFile(files.ca, pki.ca.cert)
  await writeFile(files.cert, pki.leaf.cert)
  await writeFile(files.key, pki.leaf.key, { mode: 0o600 })
  await writeFile(files.pem, pki.leaf.cert + pki.leaf.key, { mode: 0o600 })
  return files
}

/** Whether a target runs a scenario: the scenario's own list, else every target that is not dedicated. */
const runs = (s: Scenario, t: Target): boolean => s.targets === undefined ? t.dedicated !== true : s.targets.includes(t.name)

async function bench (opts: BenchOptions, children: Children, dir: string): Promise<void> {
  const m = machine()
  const wrk = findExecutable('wrk')
  const skipped: string[] = []

  // Each scenario with the tool it runs with here (wrk, or its fallback when wrk is not installed).
  const scenarios: Scenario[] = []
  for (const s of SCENARIOS) {
    if (!selected(s, opts.scenarios)) continue
    if (s.pending !== undefined) { skipped.push(`scenario ${s.name}: not measured yet, ${s.pending}`); continue }
    const tool = toolFor(s, wrk)
    if (tool === undefined) { skipped.push(`scenario ${s.name}: wrk is not installed`); continue }
    scenarios.push(tool === s.tool ? s : { ...s, tool })
  }
  if (opts.scenarios === undefined) skipped.push(...SCENARIOS.filter(s => s.soak !== undefined).map(s => `scenario ${s.name}: opt-in (BENCH_SCENARIOS=${s.name}; ${s.soak?.rounds ?? 0} × ${opts.soakSeconds} s per target)`))
  const soakSay = scenarios.some(x => x.soak !== undefined) ? `; soak rounds of ${opts.soakSeconds} s` : ''
  say(`bench: ${m.nproc} CPUs (${m.cpuModel}), node ${m.node}; ${opts.rounds} round(s) of ${opts.durationS} s${soakSay}${opts.quick ? ' (quick)' : ''}`)
  if (wrk === undefined && scenarios.some(s => s.tool === 'close')) skipped.push('wrk is not installed: the new-connection-per-request scenarios use bench/load/close-client.ts (Node) instead')
  const targets: Target[] = []
  for (const t of allTargets()) {
    if (opts.targets !== undefined && !opts.targets.has(t.name)) continue
    if (t.dedicated === true && !scenarios.some(s => runs(s, t))) continue // nothing to run it for
    const why = t.unavailable()
    if (why !== undefined) { skipped.push(`target ${t.name}: ${why} (see bench/README.md to install it)`); continue }
    targets.push(t)
  }

  // TLS files only when an https scenario runs; then every target that can also serves https.
  const tls = scenarios.some(s => s.scheme === 'https') ? await makeTls(dir) : undefined
  const ctx: LoadContext = { children, dir, wrk, ...(tls === undefined ? {} : { tls: { ca: tls.ca, servername: tls.servername } }) }

  // One backend for everything, its own process.
  const [backendPort, backendHttpsPort] = await freePorts(tls === undefined ? 1 : 2) as [number, number | undefined]
  const tlsArgs = tls === undefined || backendHttpsPort === undefined ? [] : [String(backendHttpsPort), tls.cert, tls.key]
  const backend = children.spawn('backend', process.execPath, [new URL('./backend.js', import.meta.url).pathname, String(backendPort), ...tlsArgs], { logFile: join(dir, 'backend.log') })
  await waitForHttp(backendPort, '/100b', backend)
  if (tls !== undefined && backendHttpsPort !== undefined) await waitForHttp(backendHttpsPort, '/100b', backend, 15_000, tls)

  const running = new Map<string, Running>()
  for (const t of targets) {
    const tdir = join(dir, t.name)
    await mkdir(tdir, { recursive: true })
    try {
      const r = await t.start({ children, backendPort, backendHttpsPort, tls, dir: tdir, nproc: m.nproc })
      running.set(t.name, r)
      say(`  started ${t.name} on port ${r.port}${r.httpsPort === undefined ? '' : `, https ${r.httpsPort}`}${r.pid === undefined ? '' : ` (pid ${[r.pid, ...r.alsoMeasure ?? []].join(', ')})`}`)
    } catch (err) {
      skipped.push(`target ${t.name}: failed to start: ${message(err)}`)
      say(`  ${t.name} failed to start: ${message(err)}`)
    }
  }
  const live = targets.filter(t => running.has(t.name))

  const idle: IdleResult[] = []
  const wantIdle = opts.idleConnections > 0 && (opts.scenarios === undefined || opts.scenarios.has('idle'))
  if (wantIdle) {
    // Dedicated targets (the tunnel) hold client connections exactly as their plain twin does: not measured again.
    for (const t of live.filter(x => x.dedicated !== true)) {
      const r = running.get(t.name) as Running
      say(`  idle: ${opts.idleConnections} connections to ${t.name}`)
      try {
        const res = await measureIdle(ctx, t.name, r.pid ?? backend.pid, r.port, opts.idleConnections)
        idle.push(res)
        say(`    ${(res.bytesPerConnection / 1024).toFixed(1)} KiB per connection, slope ${(res.slopeBytesPerConnection / 1024).toFixed(1)} (${res.stillOpen} open, ${res.failed} failed)`)
      } catch (err) {
        idle.push({ target: t.name, connections: opts.idleConnections, opened: 0, failed: 0, stillOpen: 0, rssBeforeKb: 0, rssAfterKb: 0, bytesPerConnection: Number.NaN, slopeBytesPerConnection: Number.NaN, error: message(err) })
      }
    }
  }

  // Load warm-up after the idle test: the idle test wants processes whose heap has not grown under load.
  for (const t of live) await warmUp(ctx, running.get(t.name) as Running)

  const cells: Cell[] = []
  const lineup = new Map<Scenario, Target[]>()
  for (const s of scenarios) {
    const here = live.filter(t => runs(s, t))
    if (s.scheme === 'https') {
      for (const t of here.filter(x => running.get(x.name)?.httpsPort === undefined)) skipped.push(`scenario ${s.name}: ${t.name} serves plain http only`)
    }
    lineup.set(s, s.scheme === 'https' ? here.filter(t => running.get(t.name)?.httpsPort !== undefined) : here)
  }
  const throughput = scenarios.filter(s => s.soak === undefined)
  const total = throughput.reduce((a, s) => a + opts.rounds * (lineup.get(s)?.length ?? 0), 0)
  let n = 0
  for (const s of throughput) {
    const targetsHere = lineup.get(s) ?? []
    const row = targetsHere.map(t => { const c: Cell = { scenario: s.name, target: t.name, rounds: [] }; cells.push(c); return c })
    for (let round = 1; round <= opts.rounds; round++) {
      for (const [i, t] of targetsHere.entries()) {
        const cell = row[i] as Cell
        n++
        if (cell.error !== undefined) continue // failed once: do not keep hammering a broken target
        try {
          const r = await runRound(ctx, backend.pid, running.get(t.name) as Running, s, opts.durationS, round)
          cell.rounds.push(r)
          say(`  [${n}/${total}] ${s.name} r${round} ${t.name}: ${r.rps < 100 ? r.rps.toFixed(1) : Math.round(r.rps)} req/s, ${(r.bytes / r.durationS / 1e6).toFixed(1)} MB/s, p99 ${r.p99.toFixed(2)} ms${r.errors + r.non2xx > 0 ? `, ${r.errors} errors, ${r.non2xx} non-2xx` : ''}`)
        } catch (err) {
          cell.error = message(err)
          say(`  [${n}/${total}] ${s.name} r${round} ${t.name}: FAILED ${cell.error}`)
        }
        await sleep(300) // let sockets of the previous run wind down
      }
    }
  }
  summarize(cells)

  // Soak scenarios last, one target at a time, its rounds back to back (bench/soak.ts).
  const soak: SoakResult[] = []
  for (const s of scenarios.filter(x => x.soak !== undefined)) {
    for (const t of lineup.get(s) ?? []) {
      const r = running.get(t.name) as Running
      if (r.pid === undefined) { skipped.push(`scenario ${s.name}: ${t.name} has no proxy process to watch`); continue }
      say(`  soak ${t.name}: ${s.soak?.rounds ?? 0} rounds of ${opts.soakSeconds} s`)
      const res = await runSoak(ctx, backend.pid, t.name, r, s, opts.soakSeconds, say)
      soak.push(res)
      say(`    ${res.verdict ?? ''}: ${res.changePct?.toFixed(1) ?? '?'} % from round 1 to the last${res.error === undefined ? '' : ` (${res.error})`}`)
      await sleep(300)
    }
  }

  const date = new Date()
  const result = {
    date: date.toISOString(),
    machine: m,
    settings: { quick: opts.quick, durationS: opts.durationS, rounds: opts.rounds, idleConnections: opts.idleConnections, soakSeconds: opts.soakSeconds },
    tools: { autocannon: `${packageVersion('autocannon')} (programmatic API, in a child process)`, wrk: wrk === undefined ? null : versionOf(wrk, ['-v']) },
    targets: targets.map(t => ({ name: t.name, description: t.description, version: t.version(), started: running.has(t.name) })),
    scenarios: scenarios.map(s => ({ ...s })),
    skipped,
    cells,
    idle,
    soak,
    peerTargets: peerTargets(cells, idle, soak),
  }
  await mkdir(opts.outDir, { recursive: true })
  const file = join(opts.outDir, `${date.toISOString().replace(/:/g, '-').replace(/\.\d+Z$/, 'Z')}${opts.quick ? '-quick' : ''}.json`)
  await writeFile(file, `${JSON.stringify(result, null, 2)}\n`)
  process.stdout.write(`\n## edge-proxy bench, ${result.date}\n\n`)
  process.stdout.write(`${m.nproc} CPUs (${m.cpuModel}), ${m.memTotalMb} MB, node ${m.node}, Linux ${m.kernel}, load average at start ${m.loadavgAtStart.join(' ')}; `)
  const plan = [...throughput.length > 0 ? [`${opts.rounds} round(s) × ${opts.durationS} s per scenario and target`] : [], ...soak.length > 0 ? [`soak rounds of ${opts.soakSeconds} s`] : []]
  process.stdout.write(`${plan.join(', ')}${opts.quick ? ' (quick mode: a smoke run, not a measurement)' : ''}.\n\n`)
  process.stdout.write(markdown(scenarios, cells, idle, skipped, soak))
  process.stdout.write(targetsMarkdown(result.peerTargets))
  process.stdout.write(`\nresult: ${file}\n`)
}

async function main (): Promise<number> {
  let opts
  try {
    opts = parseOptions(process.argv.slice(2))
  } catch (err) {
    say(`bench: ${message(err)}\n\n${USAGE}`)
    return 2
  }
  if (opts === 'help') { process.stdout.write(USAGE); return 0 }
  if (process.platform !== 'linux') { say('bench: needs Linux (/proc) to sample CPU and memory'); return 2 }
  const children = new Children()
  const dir = await mkdtemp(join(tmpdir(), 'edge-bench-'))
  let failed = false
  try {
    await bench(opts, children, dir)
    // HA failover against keepalived (bench/ha.ts): its own network namespaces, so root only; with BENCH_SCENARIOS
    // it runs when the list names "ha".
    if (opts.scenarios === undefined || opts.scenarios.has('ha')) {
      if (process.getuid?.() !== 0) say('bench: scenario ha skipped: it needs root (network namespaces)')
      else {
        const { spawnSync } = await import('node:child_process')
        process.stdout.write('\n### HA failover: edge-proxy against keepalived\n\n')
        spawnSync(process.execPath, [join(import.meta.dirname, 'ha.js'), opts.quick ? '2' : '10'], { stdio: 'inherit' })
      }
    }
  } catch (err) {
    failed = true
    say(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\nlogs kept in ${dir}`)
  } finally {
    await children.stopAll()
    if (!failed) await rm(dir, { recursive: true, force: true })
  }
  return failed ? 1 : 0
}

process.exitCode = await main()

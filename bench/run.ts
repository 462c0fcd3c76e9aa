// `npm run bench`: starts one backend and every available target, measures each scenario round-robin over the
// targets (A B C A B C ...), writes bench/results/<date>.json and prints a markdown table. See bench/README.md.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Children, freePorts, waitForHttp } from './procs.js'
import { findExecutable, machine, packageVersion, versionOf } from './machine.js'
import { parseOptions, USAGE, type BenchOptions } from './options.js'
import { SCENARIOS, type Scenario } from './scenarios.js'
import { allTargets, type Running, type Target } from './targets.js'
import { measureIdle, runRound, warmUp } from './measure.js'
import { markdown, summarize, type Cell, type IdleResult } from './report.js'
import type { LoadContext } from './load/index.js'

function say (line: string): void { process.stderr.write(`${line}\n`) }
const message = (err: unknown): string => err instanceof Error ? err.message : String(err)

async function bench (opts: BenchOptions, children: Children, dir: string): Promise<void> {
  const m = machine()
  const wrk = findExecutable('wrk')
  const ctx: LoadContext = { children, dir, wrk }
  const skipped: string[] = []
  say(`bench: ${m.nproc} CPUs (${m.cpuModel}), node ${m.node}; ${opts.rounds} round(s) of ${opts.durationS} s${opts.quick ? ' (quick)' : ''}`)

  const targets: Target[] = []
  for (const t of allTargets()) {
    if (opts.targets !== undefined && !opts.targets.has(t.name)) continue
    const why = t.unavailable()
    if (why !== undefined) { skipped.push(`target ${t.name}: ${why} (see bench/README.md to install it)`); continue }
    targets.push(t)
  }
  const scenarios: Scenario[] = []
  for (const s of SCENARIOS) {
    if (opts.scenarios !== undefined && !opts.scenarios.has(s.name)) continue
    if (s.pending !== undefined) { skipped.push(`scenario ${s.name}: not measured yet, ${s.pending}`); continue }
    if (s.tool === 'wrk' && wrk === undefined) { skipped.push(`scenario ${s.name}: wrk is not installed`); continue }
    scenarios.push(s)
  }
  if (wrk === undefined && scenarios.some(s => s.tool === 'close')) skipped.push('wrk is not installed: the new-connection-per-request scenario uses bench/load/close-client.ts (Node) instead')

  // One backend for everything, its own process.
  const [backendPort] = await freePorts(1) as [number]
  const backend = children.spawn('backend', process.execPath, [new URL('./backend.js', import.meta.url).pathname, String(backendPort)], { logFile: join(dir, 'backend.log') })
  await waitForHttp(backendPort, '/100b', backend)

  const running = new Map<string, Running>()
  for (const t of targets) {
    const tdir = join(dir, t.name)
    await mkdir(tdir, { recursive: true })
    try {
      const r = await t.start({ children, backendPort, dir: tdir, nproc: m.nproc })
      running.set(t.name, r)
      say(`  started ${t.name} on port ${r.port}${r.pid === undefined ? '' : ` (pid ${r.pid})`}`)
    } catch (err) {
      skipped.push(`target ${t.name}: failed to start: ${message(err)}`)
      say(`  ${t.name} failed to start: ${message(err)}`)
    }
  }
  const live = targets.filter(t => running.has(t.name))

  const idle: IdleResult[] = []
  const wantIdle = opts.idleConnections > 0 && (opts.scenarios === undefined || opts.scenarios.has('idle'))
  if (wantIdle) {
    for (const t of live) {
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
  const total = scenarios.length * opts.rounds * live.length
  let n = 0
  for (const s of scenarios) {
    const row = live.map(t => { const c: Cell = { scenario: s.name, target: t.name, rounds: [] }; cells.push(c); return c })
    for (let round = 1; round <= opts.rounds; round++) {
      for (const [i, t] of live.entries()) {
        const cell = row[i] as Cell
        n++
        if (cell.error !== undefined) continue // failed once: do not keep hammering a broken target
        try {
          const r = await runRound(ctx, backend.pid, running.get(t.name) as Running, s, opts.durationS, round)
          cell.rounds.push(r)
          say(`  [${n}/${total}] ${s.name} r${round} ${t.name}: ${Math.round(r.rps)} req/s, p99 ${r.p99.toFixed(2)} ms${r.errors + r.non2xx > 0 ? `, ${r.errors} errors, ${r.non2xx} non-2xx` : ''}`)
        } catch (err) {
          cell.error = message(err)
          say(`  [${n}/${total}] ${s.name} r${round} ${t.name}: FAILED ${cell.error}`)
        }
        await sleep(300) // let sockets of the previous run wind down
      }
    }
  }
  summarize(cells)

  const date = new Date()
  const result = {
    date: date.toISOString(),
    machine: m,
    settings: { quick: opts.quick, durationS: opts.durationS, rounds: opts.rounds, idleConnections: opts.idleConnections },
    tools: { autocannon: `${packageVersion('autocannon')} (programmatic API, in a child process)`, wrk: wrk === undefined ? null : versionOf(wrk, ['-v']) },
    targets: targets.map(t => ({ name: t.name, description: t.description, version: t.version(), started: running.has(t.name) })),
    scenarios: scenarios.map(s => ({ ...s })),
    skipped,
    cells,
    idle,
  }
  await mkdir(opts.outDir, { recursive: true })
  const file = join(opts.outDir, `${date.toISOString().replace(/:/g, '-').replace(/\.\d+Z$/, 'Z')}${opts.quick ? '-quick' : ''}.json`)
  await writeFile(file, `${JSON.stringify(result, null, 2)}\n`)
  process.stdout.write(`\n## edge-proxy bench, ${result.date}\n\n`)
  process.stdout.write(`${m.nproc} CPUs (${m.cpuModel}), ${m.memTotalMb} MB, node ${m.node}, Linux ${m.kernel}, load average at start ${m.loadavgAtStart.join(' ')}; `)
  process.stdout.write(`${opts.rounds} round(s) × ${opts.durationS} s per scenario and target${opts.quick ? ' (quick mode: a smoke run, not a measurement)' : ''}.\n\n`)
  process.stdout.write(markdown(scenarios, cells, idle, skipped))
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

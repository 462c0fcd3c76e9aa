// `npm run fuzz`: the long run of the HTTP/1.1 differential fuzzer (test/h1-fuzz-lib.ts, test/h1-fuzz-harness.ts). Generates cases from a
// seed until the iteration count or the duration is reached, confirms each finding with slower timing, keeps one
// example per class, shrinks it to the fewest bytes that still show the class, and prints how to replay it.
// Exit code 1 when anything was found.
import { parseArgs } from 'node:util'
import { describe, generate, judge, oneWrite, shrink, type FuzzCase, type Verdict } from '../test/h1-fuzz-lib.js'
import { FAST, Harness, SLOW, STOP_BOUND_MS } from '../test/h1-fuzz-harness.js'

const USAGE = `npm run fuzz [-- options]

  --seed N            the run's seed (default: from the clock; printed)
  --iterations N      stop after N cases (default: no limit)
  --duration S        stop after S seconds (default 60)
  --case I            run only case I of --seed (with its segments), and print it
  --replay JSON       run one case: a JSON string of the bytes, as the report prints them ("GET / HTTP/1.1\\r\\n...")
  --valid-versions    only HTTP/1.0 and HTTP/1.1 request lines (to look past the version crashes)
  --no-shrink         report findings as found
  -h, --help
`

interface Finding { readonly cls: string, count: number, readonly first: string, readonly index: number, minimal: string | undefined }

async function main (): Promise<number> {
  const { values } = parseArgs({
    options: {
      seed: { type: 'string' }, iterations: { type: 'string' }, duration: { type: 'string' }, case: { type: 'string' },
      replay: { type: 'string' }, 'valid-versions': { type: 'boolean' }, 'no-shrink': { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  })
  if (values.help === true) { process.stdout.write(USAGE); return 0 }
  const seed = values.seed !== undefined ? Number(values.seed) >>> 0 : (Date.now() ^ (process.pid << 16)) >>> 0
  const iterations = values.iterations !== undefined ? Number(values.iterations) : Infinity
  const durationMs = Number(values.duration ?? 60) * 1000
  const gen = { validVersions: values['valid-versions'] === true }

  const cleanups: Array<() => unknown> = []
  const t = { after: (fn: () => unknown) => { cleanups.push(fn) } }
  try {
    const h = await Harness.start(t)
    if (values.replay !== undefined || values.case !== undefined) {
      const c = values.replay !== undefined ? oneWrite(Buffer.from(JSON.parse(values.replay) as string, 'latin1')) : generate(seed, Number(values.case), gen)
      const r = await h.run(c, SLOW)
      const v = judge(r)
      process.stdout.write(`${describe(c, r, v, values.replay !== undefined ? 'replay' : `seed ${seed} case ${values.case ?? ''}`)}\n`)
      return v.ok ? 0 : 1
    }

    process.stdout.write(`fuzz: seed ${seed}, ${Number.isFinite(iterations) ? `${iterations} cases, ` : ''}up to ${durationMs / 1000} s${gen.validVersions ? ', HTTP/1.0 and 1.1 only' : ''}\n`)
    const findings = new Map<string, Finding>()
    const passes = new Map<string, number>()
    const examples = new Map<string, string>()
    const unconfirmed = new Map<string, number>()
    const start = Date.now()
    let lastReport = start
    let i = 0
    for (; i < iterations && Date.now() - start < durationMs; i++) {
      const c = generate(seed, i, gen)
      let r = await h.run(c, FAST)
      let v = judge(r)
      if (!v.ok && !v.cls.startsWith('crash')) {
        // Confirmed only if slower timing shows the same class (a loaded machine can make FAST miss an answer).
        r = await h.run(c, SLOW)
        const again = judge(r)
        if (again.cls !== v.cls) { unconfirmed.set(v.cls, (unconfirmed.get(v.cls) ?? 0) + 1); v = again }
      }
      if (v.ok) {
        passes.set(v.cls, (passes.get(v.cls) ?? 0) + 1)
        if (v.cls !== 'same' && !examples.has(v.cls)) examples.set(v.cls, describe(c, r, v, `seed ${seed} case ${i}`))
      } else {
        const f = findings.get(v.cls)
        if (f !== undefined) {
          f.count++
          // The first example could not be shrunk (it needs its segments): try the next few of the class.
          if (f.minimal === undefined && f.count <= 4 && values['no-shrink'] !== true) {
            f.minimal = await minimise(h, c, v)
            if (f.minimal !== undefined) process.stdout.write(`\n${v.cls}: minimal ${f.minimal} (from seed ${seed} case ${i})\n`)
          }
        } else {
          const first = describe(c, r, v, `seed ${seed} case ${i}`)
          process.stdout.write(`\nFOUND ${first}\n`)
          const finding: Finding = { cls: v.cls, count: 1, first, index: i, minimal: undefined }
          findings.set(v.cls, finding)
          if (values['no-shrink'] !== true) finding.minimal = await minimise(h, c, v)
          if (finding.minimal !== undefined) process.stdout.write(`  minimal: ${finding.minimal}\n`)
        }
      }
      if (Date.now() - lastReport > 10_000) {
        lastReport = Date.now()
        process.stdout.write(`fuzz: ${i + 1} cases, ${(Date.now() - start) / 1000} s, ${findings.size} classes found\n`)
      }
    }

    // Whatever the cases left behind, shutdown_timeout (1 s) must bound the exit on SIGTERM.
    const took = await h.stop()
    const stuck = (['edge', 'node'] as const).filter(e => took[e] < 0)
    process.stdout.write(`\nfuzz: seed ${seed}: ${i} cases in ${((Date.now() - start) / 1000).toFixed(1)} s; restarts ${JSON.stringify(h.restarts())}; exit on SIGTERM took ${JSON.stringify(took)} ms${stuck.length > 0 ? ` (FINDING: ${stuck.join(' and ')} did not exit within ${STOP_BOUND_MS} ms, killed)` : ''}\n`)
    process.stdout.write(`not confirmed by a slower rerun (timing): ${unconfirmed.size === 0 ? 'none' : [...unconfirmed].map(([k, n]) => `${k} ${n}`).join(', ')}\n`)
    process.stdout.write(`passed: ${[...passes].map(([k, n]) => `${k} ${n}`).join(', ')}\n`)
    for (const [cls, ex] of examples) process.stdout.write(`\nfine (${cls}), e.g. ${ex}\n`)
    if (findings.size === 0) { process.stdout.write(stuck.length > 0 ? '\nno findings in the cases\n' : '\nno findings\n'); return stuck.length > 0 ? 1 : 0 }
    process.stdout.write(`\n${findings.size} classes of finding:\n`)
    for (const f of findings.values()) {
      const replay = f.minimal !== undefined ? `--replay '${f.minimal.replace(/'/g, "'\\''")}'` : `--seed ${seed} --case ${f.index}${gen.validVersions ? ' --valid-versions' : ''}`
      process.stdout.write(`\n[${f.count}x] ${f.cls}\n  minimal bytes: ${f.minimal ?? '(not shrunk: it needs its segments)'}\n  replay: npm run fuzz -- ${replay}\n${f.first}\n`)
    }
    return 1
  } finally {
    for (const fn of cleanups.reverse()) await fn()
  }
}

/** The fewest bytes, sent in one write, that still show `v`'s class; undefined if one write does not show it. */
async function minimise (h: Harness, c: FuzzCase, v: Verdict): Promise<string | undefined> {
  // FAST to reject quickly, SLOW to confirm: a step kept on a FAST-only difference would shrink towards noise.
  const fails = async (b: Buffer): Promise<boolean> => judge(await h.run(oneWrite(b), FAST)).cls === v.cls &&
    (v.cls.startsWith('crash') || judge(await h.run(oneWrite(b), SLOW)).cls === v.cls)
  if (!await fails(c.bytes)) return undefined
  const crash = v.cls.startsWith('crash')
  const small = await shrink(c.bytes, fails, crash ? 60 : 250)
  return JSON.stringify(small.toString('latin1'))
}

main().then(code => { process.exitCode = code }, (err: unknown) => { console.error(err); process.exitCode = 2 })

// The soak scenario (the target: "RSS flat within 10 % across three consecutive 60-second load rounds"): rounds of
// load back to back on one target, the RSS of its process tree sampled after each once the round has settled.
// Consecutive on purpose, unlike the round-robin of the throughput cells: a leak shows as RSS that keeps
// climbing under sustained load on the same process.
import { setTimeout as sleep } from 'node:timers/promises'
import type { LoadContext } from './load/index.js'
import { runRound } from './measure.js'
import { processTree, treeRssKb } from './proc-stat.js'
import { soakVerdict, type SoakResult } from './report.js'
import type { Scenario } from './scenarios.js'
import type { Running } from './targets.js'

/** Pause after a round before reading RSS: in-flight responses finish and sockets close. */
export const SOAK_SETTLE_MS = 2000

const message = (err: unknown): string => err instanceof Error ? err.message : String(err)

/**
 * Runs `scenario` (which has `soak`) against one target for its rounds of `roundS` seconds each. A failed round
 * ends the soak with the rounds so far and verdict "incomplete". `progress` is told about each round.
 */
export async function runSoak (ctx: LoadContext, backendPid: number, name: string, target: Running, scenario: Scenario, roundS: number, progress: (line: string) => void): Promise<SoakResult> {
  const spec = scenario.soak
  if (spec === undefined) throw new Error(`${scenario.name} is not a soak scenario`)
  if (target.pid === undefined) throw new Error('no proxy process to watch')
  const roots = [target.pid, ...target.alsoMeasure ?? []]
  // The tree is listed afresh at each sample: workers that were replaced still count.
  const rss = (): number => treeRssKb(roots.flatMap(r => processTree(r)))
  const result: SoakResult = { scenario: scenario.name, target: name, roundS, settleMs: SOAK_SETTLE_MS, tolerancePct: spec.tolerancePct, rssBeforeKb: rss(), rounds: [] }
  try {
    for (let round = 1; round <= spec.rounds; round++) {
      const r = await runRound(ctx, backendPid, target, scenario, roundS, round)
      await sleep(SOAK_SETTLE_MS)
      const rssAfterKb = rss()
      result.rounds.push({ ...r, rssAfterKb })
      progress(`  soak ${name} r${round}/${spec.rounds}: ${Math.round(r.rps)} req/s${r.errors + r.non2xx > 0 ? `, ${r.errors} errors, ${r.non2xx} non-2xx` : ''}, RSS ${(rssAfterKb / 1024).toFixed(1)} MB after ${SOAK_SETTLE_MS / 1000} s`)
    }
  } catch (err) {
    result.error = message(err)
  }
  const v = soakVerdict(result.rounds.map(r => r.rssAfterKb), spec.rounds, spec.tolerancePct)
  result.changePct = v.changePct
  result.verdict = v.verdict
  return result
}

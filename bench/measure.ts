// One measurement: a load round against a target while its process tree and the backend are sampled, and the
// idle-connection memory test.
import { setTimeout as sleep } from 'node:timers/promises'
import { runLoad, type LoadContext } from './load/index.js'
import { TreeSampler, processTree, treeRssKb } from './proc-stat.js'
import type { Scenario } from './scenarios.js'
import type { Running } from './targets.js'
import type { IdleResult, RoundResult } from './report.js'

export async function runRound (ctx: LoadContext, backendPid: number, target: Running, scenario: Scenario, durationS: number, round: number): Promise<RoundResult> {
  const https = scenario.scheme === 'https'
  if (https && (target.httpsPort === undefined || ctx.tls === undefined)) throw new Error('this target serves no https')
  const proxy = target.pid === undefined ? undefined : new TreeSampler([target.pid, ...target.alsoMeasure ?? []])
  const backend = new TreeSampler(backendPid)
  let load
  try {
    load = await runLoad(ctx, scenario.tool, {
      url: https ? `https://127.0.0.1:${target.httpsPort}${scenario.path}` : `http://127.0.0.1:${target.port}${scenario.path}`,
      method: scenario.method,
      bodyBytes: scenario.bodyBytes ?? 0,
      connections: scenario.connections,
      ...(scenario.rate === undefined ? {} : { rate: scenario.rate }),
      durationS,
      ...(scenario.host === undefined ? {} : { host: scenario.host }),
      ...(https && ctx.tls !== undefined ? { tls: { servername: ctx.tls.servername, ca: ctx.tls.ca } } : {}),
    })
  } catch (err) {
    proxy?.stop()
    backend.stop()
    throw err
  }
  const p = proxy?.stop()
  const b = backend.stop()
  return { ...load, round, proxyCpuMs: p?.cpuMs, proxyPeakRssKb: p?.peakRssKb, backendCpuMs: b.cpuMs }
}

/** A short untimed load so that JITs, pools and caches are warm before the first measured round (https too). */
export async function warmUp (ctx: LoadContext, target: Running): Promise<void> {
  await runLoad(ctx, 'autocannon', { url: `http://127.0.0.1:${target.port}/100b`, method: 'GET', bodyBytes: 0, connections: 20, durationS: 1 })
  if (target.httpsPort === undefined || ctx.tls === undefined) return
  await runLoad(ctx, 'autocannon', { url: `https://127.0.0.1:${target.httpsPort}/100b`, method: 'GET', bodyBytes: 0, connections: 20, durationS: 1, tls: ctx.tls })
}

const IDLE_WARM_UP = 300

interface IdleChildMessage { type: 'opened', ok: number, failed: number } // or { type: 'count', open }

/**
 * Memory per idle keep-alive connection. The warm-up is 300 connections of the same kind (each makes one
 * request and stays open), so code paths are compiled and loaded but the heap has not grown under a load test
 * (a heap grown by load has slack that hides the cost of new connections). Then RSS "before", then `count`
 * more connections in three steps with RSS sampled after each (1 s pause). The result is (after - before) /
 * the connections added, plus the least-squares slope over the four samples, which a single garbage collection
 * skews less. Run this on fresh targets, before any load.
 */
export async function measureIdle (ctx: LoadContext, name: string, rootPid: number, port: number, count: number): Promise<IdleResult> {
  const rss = (): number => treeRssKb(processTree(rootPid))
  const script = new URL('./load/idle-client.js', import.meta.url).pathname
  const child = ctx.children.spawn('idle-client', process.execPath, [script], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] })
  const ask = <T>(msg: object, type: string): Promise<T> => new Promise((resolve, reject) => {
    const onMessage = (m: { type: string }): void => { if (m.type === type) { child.proc.off('message', onMessage); resolve(m as T) } }
    child.proc.on('message', onMessage)
    child.proc.send(msg)
    void child.exited.then(() => { reject(new Error(`idle client exited: ${child.tail().trim()}`)) })
  })
  try {
    const warm = await ask<IdleChildMessage>({ type: 'open', port, path: '/100b', count: IDLE_WARM_UP, concurrency: 50 }, 'opened')
    await sleep(1000)
    const base = (await ask<{ open: number }>({ type: 'count' }, 'count')).open
    if (warm.failed > 0) throw new Error(`${warm.failed} of the ${IDLE_WARM_UP} warm-up connections failed`)
    const before = rss()
    const points: Array<[number, number]> = [[0, before]]
    let ok = 0
    let failed = 0
    for (let step = 1; step <= 3; step++) {
      const n = Math.round(count * step / 3) - Math.round(count * (step - 1) / 3)
      const opened = await ask<IdleChildMessage>({ type: 'open', port, path: '/100b', count: n, concurrency: 50 }, 'opened')
      ok += opened.ok
      failed += opened.failed
      await sleep(1000)
      const { open } = await ask<{ open: number }>({ type: 'count' }, 'count')
      points.push([open - base, rss()])
    }
    const [added, after] = points[points.length - 1] as [number, number]
    return {
      target: name,
      connections: count,
      opened: ok,
      failed,
      stillOpen: added,
      rssBeforeKb: before,
      rssAfterKb: after,
      bytesPerConnection: added > 0 ? (after - before) * 1024 / added : Number.NaN,
      slopeBytesPerConnection: slope(points) * 1024,
    }
  } finally {
    if (child.proc.connected) child.proc.send({ type: 'close' })
    await Promise.race([child.exited, sleep(3000)])
    await ctx.children.stop(child)
    await sleep(500) // the target closes its sockets before the next measurement
  }
}

/** Least-squares slope of y over x. */
function slope (points: ReadonlyArray<readonly [number, number]>): number {
  const n = points.length
  const mx = points.reduce((a, [x]) => a + x, 0) / n
  const my = points.reduce((a, [, y]) => a + y, 0) / n
  let num = 0
  let den = 0
  for (const [x, y] of points) { num += (x - mx) * (y - my); den += (x - mx) ** 2 }
  return den === 0 ? Number.NaN : num / den
}

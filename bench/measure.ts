// One measurement: a load round against a target while its process tree and the backend are sampled, and the
// idle-connection memory test.
import { setTimeout as sleep } from 'node:timers/promises'
import { runLoad, type LoadContext } from './load/index.js'
import { TreeSampler, processTree, treeRssKb } from './proc-stat.js'
import type { Scenario } from './scenarios.js'
import type { Running } from './targets.js'
import type { IdleResult, RoundResult } from './report.js'

export async function runRound (ctx: LoadContext, backendPid: number, target: Running, scenario: Scenario, durationS: number, round: number): Promise<RoundResult> {
  const proxy = target.pid === undefined ? undefined : new TreeSampler(target.pid)
  const backend = new TreeSampler(backendPid)
  let load
  try {
    load = await runLoad(ctx, scenario.tool, {
      url: `http://127.0.0.1:${target.port}${scenario.path}`,
      method: scenario.method,
      bodyBytes: scenario.bodyBytes ?? 0,
      connections: scenario.connections,
      durationS,
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

/** A short untimed load so that JITs, pools and caches are warm before the first measured round. */
export async function warmUp (ctx: LoadContext, target: Running): Promise<void> {
  await runLoad(ctx, 'autocannon', { url: `http://127.0.0.1:${target.port}/100b`, method: 'GET', bodyBytes: 0, connections: 20, durationS: 1 })
}

interface IdleChildMessage { type: 'opened', ok: number, failed: number } // or { type: 'count', open }

/**
 * Memory per idle keep-alive connection: RSS of the measured tree before, then `count` connections that each
 * made one request and stay open, RSS again after a pause; (after - before) / connections still open.
 */
export async function measureIdle (ctx: LoadContext, name: string, rootPid: number, port: number, count: number): Promise<IdleResult> {
  await sleep(1000) // let the warm-up's garbage and sockets settle
  const before = treeRssKb(processTree(rootPid))
  const script = new URL('./load/idle-client.js', import.meta.url).pathname
  const child = ctx.children.spawn('idle-client', process.execPath, [script], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] })
  const ask = <T>(msg: object, type: string): Promise<T> => new Promise((resolve, reject) => {
    const onMessage = (m: { type: string }): void => { if (m.type === type) { child.proc.off('message', onMessage); resolve(m as T) } }
    child.proc.on('message', onMessage)
    child.proc.send(msg)
    void child.exited.then(() => { reject(new Error(`idle client exited: ${child.tail().trim()}`)) })
  })
  try {
    const opened = await ask<IdleChildMessage>({ type: 'open', port, path: '/100b', count, concurrency: 50 }, 'opened')
    await sleep(1500)
    const after = treeRssKb(processTree(rootPid))
    const { open } = await ask<{ open: number }>({ type: 'count' }, 'count')
    return {
      target: name,
      connections: count,
      opened: opened.ok,
      failed: opened.failed,
      stillOpen: open,
      rssBeforeKb: before,
      rssAfterKb: after,
      bytesPerConnection: open > 0 ? (after - before) * 1024 / open : Number.NaN,
    }
  } finally {
    if (child.proc.connected) child.proc.send({ type: 'close' })
    await Promise.race([child.exited, sleep(3000)])
    await ctx.children.stop(child)
    await sleep(500) // the target closes 3000 sockets before the next measurement
  }
}

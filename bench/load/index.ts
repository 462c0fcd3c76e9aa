// Runs one load in a child process with the tool a scenario names, and returns what it measured.
// "close" (a new connection per request) uses wrk with "Connection: close" when wrk is installed (a C client
// spends far less CPU per connection than Node), otherwise bench/load/close-client.ts; the result names the tool.
import { readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { Children } from '../procs.js'
import { reapedChildrenCpuMs } from '../proc-stat.js'
import type { Tool } from '../scenarios.js'
import type { LoadResult, LoadSpec } from './result.js'
import { parseWrk, wrkArgs } from './wrk.js'

export interface LoadContext {
  readonly children: Children
  /** A scratch directory for result files. */
  readonly dir: string
  /** Path of the wrk binary, or undefined when it is not installed. */
  readonly wrk: string | undefined
  /** The bench's CA file and the name its certificate is for, when an https scenario runs. */
  readonly tls?: { readonly ca: string, readonly servername: string }
}

let seq = 0

async function runNodeChild (ctx: LoadContext, script: string, spec: LoadSpec): Promise<LoadResult> {
  const out = join(ctx.dir, `load-${process.pid}-${++seq}.json`)
  const file = new URL(script, import.meta.url).pathname
  const child = ctx.children.spawn(script, process.execPath, [file, JSON.stringify(spec), out])
  const { code, signal } = await child.exited
  if (code !== 0) throw new Error(`${script} failed (${code ?? signal}): ${child.tail().trim()}`)
  const result = JSON.parse(await readFile(out, 'utf8')) as LoadResult
  await rm(out, { force: true })
  return result
}

async function runWrk (ctx: LoadContext, wrk: string, spec: LoadSpec, close: boolean): Promise<LoadResult> {
  const log = join(ctx.dir, `wrk-${process.pid}-${++seq}.txt`)
  const cpu0 = reapedChildrenCpuMs()
  const child = ctx.children.spawn('wrk', wrk, wrkArgs(spec.url, spec.connections, spec.durationS, close, spec.host), { logFile: log })
  const { code, signal } = await child.exited
  // wrk's CPU shows up in this process's cutime/cstime once it has been reaped; nothing else exits meanwhile.
  const cpuMs = reapedChildrenCpuMs() - cpu0
  const text = await readFile(log, 'utf8')
  await rm(log, { force: true })
  if (code !== 0) throw new Error(`wrk failed (${code ?? signal}): ${text.trim()}`)
  const tls = spec.url.startsWith('https:') ? ', TLS' : ''
  return { ...parseWrk(text), tool: close ? `wrk (Connection: close${tls})` : `wrk${tls === '' ? '' : ' (TLS)'}`, cpuMs }
}

export async function runLoad (ctx: LoadContext, tool: Tool, spec: LoadSpec): Promise<LoadResult> {
  switch (tool) {
    case 'autocannon': return await runNodeChild(ctx, './autocannon-child.js', spec)
    case 'wrk':
      if (ctx.wrk === undefined) throw new Error('wrk is not installed')
      return await runWrk(ctx, ctx.wrk, spec, false)
    case 'close':
      return ctx.wrk === undefined ? await runNodeChild(ctx, './close-client.js', spec) : await runWrk(ctx, ctx.wrk, spec, true)
  }
}

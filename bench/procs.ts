// Child processes of the bench: every one is tracked so that all of them die with the harness, on success,
// on error and on SIGINT/SIGTERM. Each child gets its own process group (detached) so that one kill reaches
// its own children too (edge-proxy's cluster workers, nginx's workers).
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { createServer } from 'node:net'
import { request } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { createWriteStream, readFileSync } from 'node:fs'

export interface Child {
  readonly name: string
  readonly proc: ChildProcess
  readonly pid: number
  /** Resolves when the process has exited (with its code or signal). */
  readonly exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  /** Whatever it wrote to stderr, last 8 KiB, for error messages. */
  tail (): string
}

export class Children {
  readonly #live = new Set<Child>()
  #hooked = false

  /** Spawns a tracked child; stdout/stderr go to `logFile` (when given) and a small in-memory tail. */
  spawn (name: string, cmd: string, args: readonly string[], opts: SpawnOptions & { logFile?: string } = {}): Child {
    this.#hook()
    const { logFile, ...spawnOpts } = opts
    const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...spawnOpts, detached: true })
    if (proc.pid === undefined) throw new Error(`could not start ${name} (${cmd})`)
    let tail = ''
    const keep = (b: Buffer): void => { tail = (tail + b.toString('utf8')).slice(-8192) }
    const log = logFile === undefined ? undefined : createWriteStream(logFile, { flags: 'a' })
    for (const s of [proc.stdout, proc.stderr]) {
      if (s === null || s === undefined) continue
      s.on('data', keep)
      if (log !== undefined) s.pipe(log, { end: false })
    }
    // 'close' comes after stdout/stderr are drained; the log file is flushed before `exited` resolves.
    const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => {
      proc.once('close', (code, signal) => {
        if (log === undefined) resolve({ code, signal }); else log.end(() => { resolve({ code, signal }) })
      })
      proc.once('error', () => { resolve({ code: -1, signal: null }) })
    })
    const child: Child = { name, proc, pid: proc.pid, exited, tail: () => tail }
    this.#live.add(child)
    void exited.then(() => { this.#live.delete(child) })
    return child
  }

  /** SIGTERM to the child's process group, SIGKILL after `graceMs`. */
  async stop (child: Child, graceMs = 3000): Promise<void> {
    if (!this.#live.has(child)) return
    killGroup(child.pid, 'SIGTERM')
    const timer = setTimeout(() => { killGroup(child.pid, 'SIGKILL') }, graceMs)
    await child.exited
    clearTimeout(timer)
    killGroup(child.pid, 'SIGKILL') // stragglers of the group (orphaned workers)
  }

  async stopAll (): Promise<void> {
    await Promise.all([...this.#live].map(async c => { await this.stop(c) }))
  }

  /** Last resort from 'exit' and signal handlers: synchronous, no waiting. */
  killAllNow (): void {
    for (const c of this.#live) killGroup(c.pid, 'SIGKILL')
    this.#live.clear()
  }

  #hook (): void {
    if (this.#hooked) return
    this.#hooked = true
    process.once('exit', () => { this.killAllNow() })
    const onSignal = (signal: NodeJS.Signals): void => {
      process.stderr.write(`\nbench: ${signal}: stopping every child process\n`)
      this.stopAll().finally(() => { process.exit(130) }).catch(() => {})
      setTimeout(() => { this.killAllNow(); process.exit(130) }, 4000).unref()
    }
    process.once('SIGINT', onSignal)
    process.once('SIGTERM', onSignal)
  }
}

function killGroup (pid: number, signal: NodeJS.Signals): void {
  try { process.kill(-pid, signal) } catch { /* already gone */ }
}

/** Free loopback ports: bind port 0, read the port, close. All are held at once so they are distinct. */
export async function freePorts (n: number): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: n }, () => new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => { resolve(s) })
  })))
  const ports = servers.map(s => (s.address() as { port: number }).port)
  await Promise.all(servers.map(s => new Promise<void>(resolve => { s.close(() => { resolve() }) })))
  return ports
}

/** What an https readiness check trusts and asks for. */
export interface TlsCheck { readonly ca: string, readonly servername: string }

/**
 * Waits until GET http://127.0.0.1:port/path (https with `tls`, verifying the certificate) answers 200, or the
 * child dies, or `timeoutMs` passes.
 */
export async function waitForHttp (port: number, path: string, child: Child | undefined, timeoutMs = 15_000, tls?: TlsCheck): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last = 'no answer'
  let dead = false
  void child?.exited.then(() => { dead = true })
  while (Date.now() < deadline) {
    if (dead) throw new Error(`${child?.name ?? 'process'} exited before it answered on port ${port}: ${child?.tail().trim() ?? ''}`)
    const status = await getStatus(port, path, tls).catch((err: Error) => { last = err.message; return 0 })
    if (status === 200) return
    if (status !== 0) last = `status ${status}`
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  throw new Error(`nothing answered 200 on ${tls === undefined ? 'http' : 'https'}://127.0.0.1:${port}${path} within ${timeoutMs} ms (${last}); ${child?.tail().trim() ?? ''}`)
}

/** Waits until `text` appears in what the child wrote (its last 8 KiB), or it or `also` dies, or `timeoutMs` passes. */
export async function waitForLog (child: Child, text: string, timeoutMs: number, also?: Child): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let dead: Child | undefined
  void child.exited.then(() => { dead = child })
  void also?.exited.then(() => { dead = also })
  while (!child.tail().includes(text)) {
    if (dead !== undefined) throw new Error(`${dead.name} exited before "${text}": ${dead.tail().trim()}`)
    if (Date.now() > deadline) throw new Error(`no "${text}" from ${child.name} within ${timeoutMs} ms: ${child.tail().trim()} ${also === undefined ? '' : `/ ${also.name}: ${also.tail().trim()}`}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

function getStatus (port: number, path: string, tls?: TlsCheck): Promise<number> {
  return new Promise((resolve, reject) => {
    const opts = { host: '127.0.0.1', port, path, agent: false, timeout: 2000 }
    const send = tls === undefined ? request : httpsRequest
    const req = send(tls === undefined ? opts : { ...opts, servername: tls.servername, ca: readFileSync(tls.ca) }, res => {
      res.resume()
      res.on('end', () => { resolve(res.statusCode ?? 0) })
    })
    req.on('timeout', () => { req.destroy(new Error('timeout')) })
    req.on('error', reject)
    req.end()
  })
}

// What the bench ran on, and which peer programs are installed (the bench never installs anything).
import { accessSync, constants, readFileSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { availableParallelism, cpus, loadavg, release, totalmem } from 'node:os'
import { delimiter, join } from 'node:path'

export interface Machine {
  readonly nproc: number
  readonly cpuModel: string
  readonly node: string
  readonly kernel: string
  readonly memTotalMb: number
  readonly loadavgAtStart: readonly number[]
}

export function machine (): Machine {
  return {
    nproc: availableParallelism(),
    cpuModel: cpus()[0]?.model.trim() ?? cpuModelFromProc(),
    node: process.version,
    kernel: release(),
    memTotalMb: Math.round(totalmem() / 2 ** 20),
    loadavgAtStart: loadavg().map(n => Math.round(n * 100) / 100),
  }
}

function cpuModelFromProc (): string {
  try { return /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown' } catch { return 'unknown' }
}

/** The executable's path on PATH (plus the sbin directories, where nginx and haproxy live), or undefined. */
export function findExecutable (name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin']
  for (const d of dirs) {
    if (d === '') continue
    const p = join(d, name)
    try { accessSync(p, constants.X_OK); return p } catch { /* next */ }
  }
  return undefined
}

/** First line of `cmd args` (stdout or stderr: nginx and wrk print their version on stderr). */
export function versionOf (cmd: string, args: readonly string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 5000 })
  return `${r.stdout ?? ''}\n${r.stderr ?? ''}`.split('\n').map(l => l.trim()).find(l => l !== '') ?? 'unknown'
}

/** The version of an installed npm package (from its package.json), or "unknown". */
export function packageVersion (name: string): string {
  try {
    const file = new URL(`../../node_modules/${name}/package.json`, import.meta.url)
    return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version
  } catch { return 'unknown' }
}

/** The checkout's commit (with "+dirty" when there are changes), or "unknown" outside git. */
export function gitCommit (): string {
  const cwd = new URL('../../', import.meta.url).pathname
  const head = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd, encoding: 'utf8' })
  if (head.status !== 0) return 'unknown'
  const dirty = spawnSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd, encoding: 'utf8' })
  return `${head.stdout.trim()}${dirty.stdout.trim() === '' ? '' : '+dirty'}`
}

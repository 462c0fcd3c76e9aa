// What the bench ran on, and which peer programs are installed (the bench never installs anything).
import { accessSync, constants, readFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
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
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 5000 }).trim().split('\n')[0] ?? ''
  } catch (err) {
    const e = err as { stdout?: string, stderr?: string }
    return `${e.stdout ?? ''}${e.stderr ?? ''}`.trim().split('\n')[0] ?? 'unknown'
  }
}

// `edge-proxy upgrade`: asks a running edge's admin API to replace its serving processes with new ones from the
// code on disk (POST /api/upgrade), prints each step, and exits 0 only when the new ones serve and the old are gone.
import { parseArgs } from 'node:util'

export const UPGRADE_HELP = `Usage: edge-proxy upgrade [--admin HOST:PORT] [--token T] [--workers-only]

  --admin HOST:PORT  the edge's admin listener (default 127.0.0.1:9901)
  --token T          the [admin] token (default: $EDGE_PROXY_ADMIN_TOKEN)
  --workers-only     only the rolling restart of the workers (one at a time: a new worker from the code on disk
                     is ready before the old one stops accepting and drains)

The config file is validated first: an invalid one refuses the upgrade and the running edge keeps serving. Old
processes drain for up to [server] upgrade_drain (default 30s). SIGUSR2 to the edge's main process, or
POST /api/upgrade, does the same.
Exit status: 0 upgraded, 1 refused or failed (the reason is printed; the running edge keeps serving) or
unreachable, 2 usage error.
`

interface UpgradeAnswer { ok: boolean, steps?: string[], error?: string, oldPid?: number, newPid?: number, drainMs?: number }

export async function runUpgradeCommand (argv: string[], out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): Promise<number> {
  let values: { admin?: string, token?: string, 'workers-only'?: boolean, help?: boolean }
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { admin: { type: 'string' }, token: { type: 'string' }, 'workers-only': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    }))
  } catch (e) {
    err.write(`edge-proxy upgrade: ${(e as Error).message}\n\n${UPGRADE_HELP}`)
    return 2
  }
  if (values.help === true) { out.write(UPGRADE_HELP); return 0 }
  const admin = values.admin ?? '127.0.0.1:9901'
  const base = `http://${admin.includes('://') ? admin.slice(admin.indexOf('://') + 3) : admin}`
  const token = values.token ?? process.env.EDGE_PROXY_ADMIN_TOKEN
  const headers: Record<string, string> = { 'content-type': 'application/json' }
  if (token !== undefined && token !== '') headers.authorization = `Bearer ${token}`
  const workersOnly = values['workers-only'] === true
  out.write(`upgrading the edge at ${base}${workersOnly ? ' (workers only)' : ''}\n`)
  let res: Response
  try {
    // The answer comes when the upgrade is over: each old process may drain for up to upgrade_drain.
    res = await fetch(`${base}/api/upgrade`, { method: 'POST', headers, body: JSON.stringify({ workers_only: workersOnly }), signal: AbortSignal.timeout(3_600_000) })
  } catch (e) {
    const cause = (e as Error & { cause?: Error }).cause
    err.write(`edge-proxy upgrade: cannot reach the admin API at ${base}: ${cause?.message ?? (e as Error).message}\n`)
    return 1
  }
  const text = await res.text()
  let body: UpgradeAnswer | undefined
  try { body = JSON.parse(text) as UpgradeAnswer } catch { body = undefined }
  for (const s of body?.steps ?? []) out.write(`  ${s}\n`)
  if (!res.ok || body?.ok !== true) {
    err.write(`edge-proxy upgrade: ${res.status}: ${body?.error ?? text.trim()}\n`)
    return 1
  }
  if (body.oldPid !== undefined) {
    // A whole-edge hand-over answers from the old process, which now drains: done once it is gone.
    const bound = (body.drainMs ?? 30_000) + 5000
    const deadline = Date.now() + bound
    while (running(body.oldPid)) {
      if (Date.now() > deadline) {
        err.write(`edge-proxy upgrade: the old edge process ${body.oldPid} is still running ${bound} ms later\n`)
        return 1
      }
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    out.write(`  old edge process ${body.oldPid} exited; edge process ${body.newPid ?? '?'} serves\n`)
  }
  out.write('upgraded\n')
  return 0
}

/** Whether a process with this pid runs on this host (the admin API is loopback unless a token guards it). */
function running (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

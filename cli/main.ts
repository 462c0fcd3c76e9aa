#!/usr/bin/env node
// edge-proxy's command line: the only place that wires components together.
import { parseArgs } from 'node:util'
import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import cluster from 'node:cluster'
import { dirname, join, resolve } from 'node:path'
import { ConfigError, loadConfigFile, parseConfigText, summarize } from '../config/load.js'
import { EdgeError } from '../config/errors.js'
import { CONFIG_TEXT_ENV, SUPERVISED_ENV, supervise } from './supervisor.js'
import { createEventLog } from '../proxy/ops/log.js'
import type { Logger } from 'pino'

const HELP = `edge-proxy: an edge routing proxy and load balancer

Usage:
  edge-proxy --config proxy.toml [--demo]     run the edge
  edge-proxy check --config proxy.toml        validate the config: prints a summary (exit 0) or the errors (exit 2)
  edge-proxy cert ca|issue|inspect ...        local CA and certificates (edge-proxy cert --help)
  edge-proxy token --secret S --name N ...    sign a tunnel token (edge-proxy token --help)
  edge-proxy tunnel --edge URL --token T --name N --to URL ...   register a backend through a tunnel
  edge-proxy backends add|remove|list --admin 127.0.0.1:9901 POOL [URL]   pool members at run time (edge-proxy backends --help)
  edge-proxy report shadow --store DIR [--since 1h] [--format html|json|md] [--out FILE]   shadow traffic differences
  edge-proxy ha status --admin 127.0.0.1:9901   HA role, peers, floating IP holder, transitions (edge-proxy ha --help)
  edge-proxy --help | --version

Options:
  -c, --config FILE   the TOML config (default: proxy.toml)
      --demo          also start demo backends on the config's loopback backend URLs (used by npm start)

Signals: SIGHUP reloads the config; SIGTERM/SIGINT drain in-flight requests and exit 0.
`

function version (): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  return pkg.version
}

async function main (argv: string[]): Promise<number> {
  const command = argv[0] !== undefined && !argv[0].startsWith('-') ? argv[0] : 'run'
  // Subcommands load their modules on demand, so the running edge never carries node-forge and friends.
  if (command === 'cert') return await (await import('./cert.js')).runCertCommand(argv.slice(1))
  if (command === 'token') return (await import('./token.js')).runTokenCommand(argv.slice(1))
  if (command === 'tunnel') return await (await import('./tunnel.js')).runTunnelCommand(argv.slice(1))
  if (command === 'backends') return await (await import('./backends.js')).runBackendsCommand(argv.slice(1))
  if (command === 'report') return await (await import('./report.js')).runReportCommand(argv.slice(1))
  if (command === 'ha') return await (await import('./ha.js')).runHaCommand(argv.slice(1))
  const rest = command === 'run' && argv[0] !== 'run' ? argv : argv.slice(1)
  let values: { config?: string, demo?: boolean, help?: boolean, version?: boolean }
  try {
    ({ values } = parseArgs({
      args: rest,
      options: {
        config: { type: 'string', short: 'c' },
        demo: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
      strict: true,
      allowPositionals: false,
    }))
  } catch (err) {
    process.stderr.write(`edge-proxy: ${(err as Error).message}\n\n${HELP}`)
    return 2
  }
  if (values.help === true) { process.stdout.write(HELP); return 0 }
  if (values.version === true) { process.stdout.write(`${version()}\n`); return 0 }
  const file = values.config ?? 'proxy.toml'
  switch (command) {
    case 'check':
    case 'run': {
      let config
      let primaryText: string | undefined
      // The example config's https listener serves .demo-certs/ beside it: make them before the config is read.
      if (values.demo === true) await demoCertificates(file)
      try {
        // A cluster worker, or a serving process its supervisor restarted, runs the config its parent last served.
        primaryText = cluster.isWorker || process.env[SUPERVISED_ENV] === '1' ? process.env[CONFIG_TEXT_ENV] : undefined
        config = primaryText === undefined ? await loadConfigFile(file) : parseConfigText(primaryText, resolve(file))
      } catch (err) {
        if (err instanceof ConfigError) {
          process.stderr.write(`edge-proxy: invalid config (${err.problems.length} problem${err.problems.length === 1 ? '' : 's'}):\n${err.message}\n`)
          return 2
        }
        throw err
      }
      if (command === 'check') { process.stdout.write(`${summarize(config)}\n`); return 0 }
      if (config.server.workers <= 1 && !cluster.isWorker && process.env[SUPERVISED_ENV] !== '1') {
        // One serving process: it runs under a supervisor that restarts it if it dies (cli/supervisor.ts).
        const ha = config.ha
        // A serving process killed outright cannot give up the floating IP: its supervisor does (ha/ip.ts).
        const onDeath = ha === undefined ? undefined : async (): Promise<void> => { await (await import('../ha/ip.js')).releaseAfterCrash(ha) }
        exitWith(await supervise(rest, await readFile(resolve(file), 'utf8'), createEventLog(config.log.level, config.log.format), onDeath))
      }
      const text = primaryText ?? await readFile(resolve(file), 'utf8')
      const log = createEventLog(config.log.level, config.log.format)
      // A serving process (a cluster worker, or the supervised one): state after an uncaught throw cannot be
      // trusted, so it is logged with its stack and the process ends; its parent starts a clean one.
      if (cluster.isWorker || config.server.workers <= 1) exitOnUncaught(log)
      // Loaded here, not at the top: the supervisor never serves, so it stays a small process.
      const { runEdge } = await import('./run.js')
      exitWith(await runEdge(config, { file, demo: values.demo === true, text, log }))
    }
    default:
      process.stderr.write(`edge-proxy: unknown command "${command}"\n\n${HELP}`)
      return 2
  }
}

async function demoCertificates (file: string): Promise<void> {
  const dir = join(dirname(resolve(file)), '.demo-certs')
  // Loaded on demand: node-forge stays out of the running edge unless --demo asks for certificates.
  const { ensureDemoCertificates, DEMO_NAMES } = await import('../proxy/tls/demo-certs.js')
  const made = await ensureDemoCertificates(dir, [...DEMO_NAMES, 'demo.localhost', 'api.localhost', 'users.localhost'])
  if (made.created) process.stderr.write(`edge-proxy: made demo certificates in ${dir}; trust ${made.files.ca} (curl --cacert)\n`)
}

/** Ends the process: the edge stopped (handles such as a lingering socket must not keep it alive). */
function exitWith (code: number): never {
  process.exit(code)
}

function exitOnUncaught (log: Logger): void {
  const die = (err: unknown, kind: string): void => {
    log.fatal({ err, kind }, `${kind}: this serving process ends and a new one is started`)
    log.flush()
    process.exit(70)
  }
  process.on('uncaughtException', err => { die(err, 'uncaught exception') })
  process.on('unhandledRejection', err => { die(err, 'unhandled rejection') })
}

main(process.argv.slice(2)).then(
  code => { if (code >= 0) process.exitCode = code },
  (err: unknown) => {
    // An EdgeError is the edge's own word on what went wrong (a port in use, say): one line, exit 2. Anything
    // else is a bug, and its stack helps whoever reports it.
    if (err instanceof EdgeError) { process.stderr.write(`edge-proxy: ${err.message}\n`); process.exit(2) }
    process.stderr.write(`edge-proxy: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exit(1)
  },
)

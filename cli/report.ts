// `edge-proxy report shadow`: a report of the shadow comparisons in a store directory (proxy/mirror/report.ts).
import { parseArgs } from 'node:util'
import { rename, stat, writeFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { parseDuration } from '../config/duration.js'
import { buildReport, renderHtml, renderMarkdown } from '../proxy/mirror/report.js'

export const REPORT_HELP = `Usage: edge-proxy report shadow --store DIR [--since 1h] [--format html|json|md] [--out FILE]

  --store DIR      the [pools.NAME.shadow] store directory (every worker's files, rotated ones too)
  --since DURATION only records from the last DURATION (e.g. 15m, 1h, 2d); default: all of them
  --format F       md (default), json (stable, for scripts) or html (one self-contained page)
  --out FILE       write there (atomically) instead of to stdout

Per endpoint: requests compared, how many differ and the rate, the fields that differ with their rates and noise
rates (a field random on the secondary too is noise), example differences side by side, and the latency of the
primary and the shadow (p50/p95/p99). Exit status: 0 done, 1 the store cannot be read, 2 usage error.
`

export async function runReportCommand (argv: string[], out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): Promise<number> {
  let values: { store?: string, since?: string, format?: string, out?: string, help?: boolean }
  let positionals: string[]
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      options: { store: { type: 'string' }, since: { type: 'string' }, format: { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: true,
    }))
  } catch (e) {
    return usage(err, (e as Error).message)
  }
  if (values.help === true) { out.write(REPORT_HELP); return 0 }
  if (positionals[0] !== 'shadow' || positionals.length !== 1) return usage(err, positionals[0] === undefined ? 'say which report: shadow' : `unknown report "${positionals.join(' ')}"`)
  if (values.store === undefined) return usage(err, '--store DIR is required')
  const format = values.format ?? 'md'
  if (format !== 'md' && format !== 'json' && format !== 'html') return usage(err, `--format "${format}" is not html, json or md`)
  let sinceMs: number | undefined
  if (values.since !== undefined) {
    sinceMs = parseDuration(values.since)
    if (sinceMs === undefined || sinceMs <= 0) return usage(err, `--since "${values.since}" is not a duration like 1h`)
  }
  const dir = resolve(values.store)
  try {
    if (!(await stat(dir)).isDirectory()) throw new Error('not a directory')
  } catch (e) {
    err.write(`edge-proxy report: cannot read the store ${dir}: ${(e as Error).message}\n`)
    return 1
  }
  const report = await buildReport(dir, sinceMs === undefined ? {} : { sinceMs })
  const text = format === 'json' ? `${JSON.stringify(report, null, 2)}\n` : format === 'html' ? renderHtml(report) : renderMarkdown(report)
  if (values.out === undefined) { out.write(text); return 0 }
  const file = resolve(values.out)
  const tmp = `${file}.${process.pid}.tmp`
  await writeFile(tmp, text)
  await rename(tmp, file)
  err.write(`edge-proxy report: ${report.records} comparisons, ${report.pools.reduce((n, p) => n + p.endpoints.length, 0)} endpoints -> ${file}\n`)
  return 0
}

function usage (err: NodeJS.WritableStream, message: string): number {
  err.write(`edge-proxy report: ${message}\n\n${REPORT_HELP}`)
  return 2
}

// One autocannon run in its own process, so the harness stays idle and the load generator's CPU is its own:
//   node dist/bench/load/autocannon-child.js '<LoadSpec JSON>' OUT_FILE
// Writes a LoadResult (without cpuMs of process start-up: only the run itself is counted) to OUT_FILE.
import autocannon from 'autocannon'
import { writeFileSync } from 'node:fs'
import type { LoadResult, LoadSpec } from './result.js'

const spec = JSON.parse(process.argv[2] ?? '{}') as LoadSpec
const out = process.argv[3] as string
const body = spec.bodyBytes > 0 ? Buffer.alloc(spec.bodyBytes, 'u') : undefined
const headers: Record<string, string> = {}
if (body !== undefined) headers['content-type'] = 'application/octet-stream'
if (spec.host !== undefined) headers.host = spec.host

const cpu0 = process.cpuUsage()
const r = await autocannon({
  url: spec.url,
  method: spec.method,
  connections: spec.connections,
  ...(spec.rate === undefined ? {} : { overallRate: spec.rate }),
  duration: spec.durationS,
  pipelining: 1,
  timeout: 10,
  headers,
  ...(body === undefined ? {} : { body }),
  // autocannon never verifies certificates (it sets rejectUnauthorized: false itself); SNI is still sent.
  ...(spec.tls === undefined ? {} : { servername: spec.tls.servername }),
})
const cpu = process.cpuUsage(cpu0)
const requests = r['1xx'] + r['2xx'] + r['3xx'] + r['4xx'] + r['5xx']
const result: LoadResult = {
  tool: 'autocannon',
  requests,
  durationS: r.duration,
  rps: requests / r.duration,
  p50: r.latency.p50,
  p99: r.latency.p99,
  errors: r.errors,
  non2xx: r.non2xx,
  bytes: r.throughput.total,
  cpuMs: (cpu.user + cpu.system) / 1000,
}
writeFileSync(out, JSON.stringify(result))

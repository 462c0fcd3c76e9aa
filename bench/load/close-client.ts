// A new connection per request, used for the "close" scenarios when wrk is not installed (autocannon always
// keeps connections alive). `connections` loops each open a connection (TCP, or TLS with a full handshake for
// https URLs: no session is reused), send one request with "Connection: close", read the whole response, and
// start over, until the duration is up. TLS certificates are verified against the bench's CA.
//   node dist/bench/load/close-client.js '<LoadSpec JSON>' OUT_FILE
import { connect as connectTcp, type Socket } from 'node:net'
import { connect as connectTls } from 'node:tls'
import { readFileSync, writeFileSync } from 'node:fs'
import type { LoadResult, LoadSpec } from './result.js'

const spec = JSON.parse(process.argv[2] ?? '{}') as LoadSpec
const out = process.argv[3] as string
const url = new URL(spec.url)
const port = Number(url.port)
const head = Buffer.from(`${spec.method} ${url.pathname} HTTP/1.1\r\nhost: ${spec.host ?? url.host}\r\nconnection: close\r\n\r\n`)
const tlsOptions = spec.tls === undefined ? undefined : { host: url.hostname, port, servername: spec.tls.servername, ca: readFileSync(spec.tls.ca) }

const latencies: number[] = []
let errors = 0
let non2xx = 0
let bytes = 0
const cpu0 = process.cpuUsage()
const start = performance.now()
const end = start + spec.durationS * 1000

function open (): Socket {
  if (tlsOptions === undefined) {
    const s = connectTcp(port, url.hostname)
    s.once('connect', () => { s.end(head) })
    return s
  }
  const s = connectTls(tlsOptions)
  s.once('secureConnect', () => { s.end(head) })
  return s
}

/** One request on a fresh connection; resolves when the server has closed it (the response is complete). */
function once (): Promise<void> {
  return new Promise(resolve => {
    const t0 = performance.now()
    let first: Buffer | undefined
    const s = open()
    s.setTimeout(10_000, () => { s.destroy(new Error('timeout')) })
    s.on('data', (b: Buffer) => { bytes += b.length; if (first === undefined) first = b })
    s.once('error', () => { errors++ })
    s.once('close', hadError => {
      if (!hadError && first !== undefined) {
        latencies.push(performance.now() - t0)
        const status = Number(first.subarray(9, 12).toString())
        if (status < 200 || status >= 400) non2xx++
      } else if (!hadError) errors++
      resolve()
    })
  })
}

async function loop (): Promise<void> {
  while (performance.now() < end) await once()
}

await Promise.all(Array.from({ length: spec.connections }, loop))
const durationS = (performance.now() - start) / 1000
const cpu = process.cpuUsage(cpu0)
latencies.sort((a, b) => a - b)
const pct = (p: number): number => latencies.length === 0 ? 0 : latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] as number
const result: LoadResult = {
  tool: tlsOptions === undefined ? 'node-close-client' : 'node-close-client (TLS)',
  requests: latencies.length,
  durationS,
  rps: latencies.length / durationS,
  p50: pct(0.5),
  p99: pct(0.99),
  errors,
  non2xx,
  bytes,
  cpuMs: (cpu.user + cpu.system) / 1000,
}
writeFileSync(out, JSON.stringify(result))

// Helpers for the tls-edge tests: a running Edge from TOML text written beside its certificates, and backends.
import http from 'node:http'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import type { AddressInfo } from 'node:net'
import type { TestContext } from 'node:test'
import pino from 'pino'
import { loadConfigFile } from '../config/load.js'
import { Edge } from '../proxy/edge.js'

export interface RunningEdge {
  readonly edge: Edge
  readonly logs: Record<string, unknown>[]
  port (listener: string): number
}

/** Writes `toml` to dir/proxy.toml, loads it (relative paths resolve against dir) and starts an Edge. */
export async function startEdge (t: TestContext, dir: string, toml: string): Promise<RunningEdge> {
  const file = join(dir, 'proxy.toml')
  await writeFile(file, toml)
  const config = await loadConfigFile(file)
  const logs: Record<string, unknown>[] = []
  const sink = new Writable({ write (chunk, _enc, cb) { for (const line of String(chunk).split('\n')) if (line !== '') logs.push(JSON.parse(line) as Record<string, unknown>); cb() } })
  const edge = new Edge(config, { log: pino({ level: 'info' }, sink) })
  await edge.start()
  t.after(() => edge.close(0))
  return {
    edge,
    logs,
    port (name) {
      const l = edge.listener(name)
      if (l === undefined) throw new Error(`no listener ${name}`)
      return l.port
    },
  }
}

/** An HTTP/1.1 backend answering with what it received: method, url, headers, body length. */
export async function echoBackend (t: TestContext): Promise<{ port: number, server: http.Server }> {
  const server = http.createServer((req, res) => {
    let bytes = 0
    req.on('data', (d: Buffer) => { bytes += d.length })
    req.on('end', () => {
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, rawHeaders: req.rawHeaders, bytes }))
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.after(() => { server.closeAllConnections(); server.close() })
  return { port: (server.address() as AddressInfo).port, server }
}

export const silentToml = `
[log]
access = "off"
level = "info"
[admin]
listen = "127.0.0.1:0"
`

// How the bench's Node processes (backend, Node peers) listen: plain HTTP on PORT and, when the harness passes
// `HTTPS_PORT CERT_FILE KEY_FILE` after the usual arguments, the same handler over TLS (node:https, HTTP/1.1) too.
import { createServer, type RequestListener, type Server, type ServerOptions } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { readFileSync } from 'node:fs'

/** Listens on 127.0.0.1; `tlsArgs` is [HTTPS_PORT, CERT_FILE, KEY_FILE] or empty. Returns every server started. */
export function serve (handler: RequestListener, port: number, tlsArgs: readonly string[], opts: ServerOptions): Server[] {
  const servers: Server[] = [createServer(opts, handler)]
  const [tlsPort, cert, key] = tlsArgs
  if (tlsPort !== undefined && cert !== undefined && key !== undefined) {
    const s = createHttpsServer({ ...opts, cert: readFileSync(cert), key: readFileSync(key) }, handler)
    s.listen(Number(tlsPort), '127.0.0.1')
    servers.push(s)
  }
  servers[0]?.listen(port, '127.0.0.1')
  for (const s of servers) s.maxRequestsPerSocket = 0 // explicit, so that a changed default cannot skew results
  return servers
}

/** Closes every connection and server, then exits 0: each process's SIGTERM handler. */
export function closeAll (servers: readonly Server[], then: () => Promise<unknown> = async () => {}): void {
  let left = servers.length
  for (const s of servers) {
    s.closeAllConnections()
    s.close(() => { if (--left === 0) void then().finally(() => { process.exit(0) }) })
  }
}

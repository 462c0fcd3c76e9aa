// Peer: a plain http-proxy-3 reverse proxy with a keep-alive agent and nothing else (X-Forwarded-* on, as a
// typical deployment would).
//   node dist/bench/peers/http-proxy-3.js PORT BACKEND_PORT [HTTPS_PORT CERT_FILE KEY_FILE]  (bench/serve.ts)
import { Agent } from 'node:http'
import { createProxyServer } from 'http-proxy-3'
import { closeAll, serve } from '../serve.js'

const port = Number(process.argv[2])
const backendPort = Number(process.argv[3])
const agent = new Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 256 })
const proxy = createProxyServer({ target: `http://127.0.0.1:${backendPort}`, agent, xfwd: true })
proxy.on('error', (_err, _req, res) => {
  if ('writeHead' in res && !res.headersSent) res.writeHead(502, { 'content-length': '0' })
  res.end()
})
const servers = serve((req, res) => { proxy.web(req, res) }, port, process.argv.slice(4), { keepAliveTimeout: 120_000, requestTimeout: 0 })
process.on('SIGTERM', () => { closeAll(servers) })

// Opens N keep-alive connections that each make one request and then stay open and idle, for the
// memory-per-connection measurement. Run with an IPC channel:
//   child: { type: 'open', port, path, count, concurrency } -> parent: { type: 'opened', ok, failed }
//   child: { type: 'count' } -> parent: { type: 'count', open } (how many are still open)
//   child: { type: 'close' } -> closes every socket and exits.
// Raw sockets rather than http.Agent: the client's own memory is not measured, but its speed and its
// predictability (exactly one request per socket, no pooling) matter.
import { connect, type Socket } from 'node:net'

interface Open { type: 'open', port: number, path: string, count: number, concurrency: number }
type Message = Open | { type: 'count' } | { type: 'close' }

const sockets: Socket[] = []
let live = 0

/** One connection, one request; resolves true once the whole response has arrived (the socket stays open). */
function openOne (port: number, path: string): Promise<boolean> {
  return new Promise(resolve => {
    const s = connect(port, '127.0.0.1')
    let buf = ''
    let done = false
    const finish = (ok: boolean): void => { if (!done) { done = true; resolve(ok) } }
    s.setEncoding('latin1')
    s.setTimeout(10_000, () => { s.destroy(); finish(false) })
    s.once('connect', () => { s.write(`GET ${path} HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\n\r\n`) })
    s.on('data', (chunk: string) => {
      if (done) return
      buf += chunk
      const end = buf.indexOf('\r\n\r\n')
      if (end < 0) return
      const len = /\r\ncontent-length:\s*(\d+)/i.exec(buf.slice(0, end))
      const complete = len !== null ? buf.length - end - 4 >= Number(len[1]) : buf.endsWith('0\r\n\r\n')
      if (complete) {
        s.setTimeout(0)
        sockets.push(s)
        live++
        s.once('close', () => { live-- })
        finish(buf.startsWith('HTTP/1.1 200'))
      }
    })
    s.once('error', () => { finish(false) })
    s.once('close', () => { finish(false) })
  })
}

async function open (m: Open): Promise<void> {
  let ok = 0
  let failed = 0
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < m.count) {
      next++
      if (await openOne(m.port, m.path)) ok++; else failed++
    }
  }
  await Promise.all(Array.from({ length: m.concurrency }, worker))
  process.send?.({ type: 'opened', ok, failed })
}

process.on('message', (m: Message) => {
  if (m.type === 'open') { void open(m); return }
  if (m.type === 'count') { process.send?.({ type: 'count', open: live }); return }
  for (const s of sockets) s.destroy()
  process.exit(0)
})
process.on('disconnect', () => { process.exit(0) })

// The idle timeout of a splice (TLS passthrough, an upgraded connection): no byte either way for `ms` closes both
// sides, as nginx's proxy_read_timeout / HAProxy's `timeout tunnel` do.
//
// In a splice each byte is read on one side and written on the other, so either side's socket sees all the
// traffic, and a net.Socket's own timeout is reset by its reads and writes alike: one setTimeout on one socket
// covers both directions, with no per-chunk work of ours. Only when neither side is a net.Socket (two tunnel
// streams) is a timer refreshed on each chunk.
import net from 'node:net'
import type { Duplex } from 'node:stream'

/**
 * Closes `a` and `b` once no byte went either way between them for `ms` (0 or less: never). Call it once the
 * splice is piped; either side closing first ends the watch with it.
 */
export function idleTimeout (a: Duplex, b: Duplex, ms: number): void {
  if (!(ms > 0)) return
  const cut = (): void => { a.destroy(); b.destroy() }
  const sock = a instanceof net.Socket ? a : b instanceof net.Socket ? b : undefined
  if (sock !== undefined) {
    sock.setTimeout(ms, cut)
    return
  }
  const timer = setTimeout(cut, ms)
  const touch = (): void => { timer.refresh() }
  const stop = (): void => { clearTimeout(timer) }
  a.on('data', touch)
  b.on('data', touch)
  a.once('close', stop)
  b.once('close', stop)
}

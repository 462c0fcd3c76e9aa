// PROXY protocol v1/v2 headers, written towards the local service before any tunnel bytes, so a raw
// TCP/TLS backend learns the original client address that travelled in the stream's OPEN.
import { addressBytes, type OpenInfo } from './payload.js'

const V2_SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])

/** dst is the local target's address as seen by this connection. */
export function proxyHeader (version: 1 | 2, src: OpenInfo, dstAddress: string, dstPort: number): Buffer {
  const v6 = src.family === 6 || dstAddress.includes(':')
  const srcAddr = v6 && src.family === 4 ? `::ffff:${src.address}` : src.address
  const dstAddr = v6 && !dstAddress.includes(':') ? `::ffff:${dstAddress}` : dstAddress
  if (version === 1) return Buffer.from(`PROXY ${v6 ? 'TCP6' : 'TCP4'} ${srcAddr} ${dstAddr} ${src.port} ${dstPort}\r\n`, 'latin1')
  const addrLen = v6 ? 36 : 12
  const buf = Buffer.alloc(16 + addrLen)
  V2_SIG.copy(buf, 0)
  buf[12] = 0x21 // version 2, PROXY command
  buf[13] = v6 ? 0x21 : 0x11 // AF_INET6 / AF_INET, STREAM
  buf.writeUInt16BE(addrLen, 14)
  if (v6) {
    addressBytes(srcAddr).copy(buf, 16); addressBytes(dstAddr).copy(buf, 32)
    buf.writeUInt16BE(src.port, 48); buf.writeUInt16BE(dstPort, 50)
  } else {
    addressBytes(srcAddr).copy(buf, 16); addressBytes(dstAddr).copy(buf, 20)
    buf.writeUInt16BE(src.port, 24); buf.writeUInt16BE(dstPort, 26)
  }
  return buf
}

// Listen addresses: "127.0.0.1:8080", "[::1]:8080", "localhost:8080", ":8080" (all interfaces).
import { lookup } from 'node:dns/promises'
import { BlockList, isIP } from 'node:net'

export interface Address { host: string, port: number }

export function parseAddress (text: string): Address | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]*)):(\d{1,5})$/.exec(text.trim())
  if (m === null) return undefined
  const port = Number(m[3])
  if (port > 65535) return undefined
  const host = m[1] ?? m[2] ?? ''
  return { host: host === '' ? '0.0.0.0' : host, port }
}

export function formatAddress (a: Address): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`
}

const LOOPBACK = new BlockList()
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4')
LOOPBACK.addAddress('::1', 'ipv6') // BlockList also matches IPv4-mapped ::ffff:127.x.y.z against the ipv4 subnet

/** Whether an IP literal is a loopback address (127.0.0.0/8, ::1, ::ffff:127.x.y.z); false for anything else. */
export function isLoopbackIp (ip: string): boolean {
  const family = isIP(ip)
  return family !== 0 && LOOPBACK.check(ip, family === 4 ? 'ipv4' : 'ipv6')
}

/**
 * A literal IP judged as an IP, or the name "localhost"; any other name is not known to be loopback without
 * resolving it ("127.0.0.1.nip.io" is a name). For the admin listener, see loopbackProblem.
 */
export function isLoopback (host: string): boolean {
  return host === 'localhost' || isLoopbackIp(host)
}

const LOOKUP_TIMEOUT = 3000

/**
 * Undefined when `host` is a loopback address or a name whose every address is loopback; else why not ("does not
 * resolve", "resolves to 192.0.2.1"). A name that does not answer within 3 s counts as not loopback.
 */
export async function loopbackProblem (host: string): Promise<string | undefined> {
  if (isIP(host) !== 0) return isLoopbackIp(host) ? undefined : 'is not loopback'
  let timer: NodeJS.Timeout | undefined
  try {
    const found = await Promise.race([
      lookup(host, { all: true, verbatim: true }),
      new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`no answer in ${LOOKUP_TIMEOUT / 1000} s`)) }, LOOKUP_TIMEOUT) }),
    ])
    if (found.length === 0) return 'is a name that resolves to no address'
    const outside = found.filter(a => !isLoopbackIp(a.address)).map(a => a.address)
    return outside.length === 0 ? undefined : `is a name that resolves to ${outside.join(', ')}, which is not loopback`
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    return `is a name that does not resolve here (${e.code ?? e.message}), so it is not known to be loopback`
  } finally {
    clearTimeout(timer)
  }
}

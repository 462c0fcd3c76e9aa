// One sampled request (ShadowCase): it watches the primary's answer as the client gets it, gathers the request
// body copy, owns the shadow and secondary calls, and hands itself to the mirror's comparison once all are over.
import type { Exchange, ResponseWatcher } from '../forward/exchange.js'
import type { BodyCopy } from '../forward/tee.js'
import type { Member } from '../upstream/member.js'
import type { ShadowCall, CallOwner } from './call.js'
import { headerRecord, type Side } from './compare.js'
import { BODY_SAMPLE, type PoolShadow, type SkipReason } from './state.js'
import type { ShadowMirror } from './shadow.js'

export class ShadowCase implements ResponseWatcher, CallOwner {
  readonly rt: PoolShadow
  readonly mirror: ShadowMirror
  readonly method: string
  readonly url: string
  readonly requestId: string
  readonly start = Date.now()
  primaryStatus = 0
  primaryHeaders: readonly Buffer[] = []
  primaryMs = -1
  primaryChunks: Buffer[] = []
  primaryBytes = 0
  primaryOver = false
  /** undefined until the exchange ends. */
  primaryComplete: boolean | undefined
  shadow: ShadowCall | undefined
  secondary: ShadowCall | undefined
  requestBytes = 0
  /** Calls not done yet; the slot is held until 0. */
  calls = 0
  /** Slot given back (the calls are over, or the case was given up before sending). */
  released = false
  abandoned = false
  /** While the request body copy fills: what the send needs, and the chunks so far. */
  pending: { readonly x: Exchange, readonly headers: string[], readonly chunks: Buffer[] } | undefined

  constructor (mirror: ShadowMirror, rt: PoolShadow, x: Exchange) {
    this.mirror = mirror
    this.rt = rt
    this.method = x.method
    this.url = x.req.url ?? '/'
    this.requestId = x.requestId
  }

  onPrimaryHead (status: number, rawHeaders: readonly Buffer[], ms: number): void {
    this.primaryStatus = status
    this.primaryHeaders = rawHeaders
    this.primaryMs = ms
  }

  onPrimaryData (chunk: Buffer): void {
    this.primaryBytes += chunk.byteLength
    if (this.primaryOver) return
    if (this.primaryBytes > this.rt.responseCap) { this.primaryOver = true; this.primaryChunks = []; return }
    this.primaryChunks.push(chunk)
  }

  onPrimaryEnd (complete: boolean): void {
    this.primaryComplete = complete
    if (!complete) this.primaryChunks = []
    this.maybeDone()
  }

  callDone (_call: ShadowCall): void {
    this.calls--
    if (this.calls === 0) this.release()
    this.maybeDone()
  }

  release (): void {
    if (this.released) return
    this.released = true
    this.rt.inflight--
    this.mirror.live.delete(this)
  }

  /** Gives the case up before anything was sent (its body was too large, or the client went away). */
  abandon (reason: SkipReason): void {
    if (this.abandoned) return
    this.abandoned = true
    this.rt.skip(reason)
    this.release()
  }

  maybeDone (): void {
    if (this.abandoned || this.primaryComplete === undefined || this.calls !== 0 || this.shadow === undefined) return
    // The comparison runs on its own turn: never inside the exchange's finish or an undici callback.
    setImmediate(runCompare, this)
  }
}

export const kCase = Symbol('shadowCase')
export type TaggedCopy = BodyCopy & { [kCase]?: ShadowCase }

export function onCopyData (this: TaggedCopy, chunk: Buffer): void {
  this[kCase]?.pending?.chunks.push(chunk)
}
export function onCopyEnd (this: TaggedCopy): void {
  const c = this[kCase]
  if (c !== undefined) c.mirror.bodyDone(c)
}
export function onCopyTruncated (this: TaggedCopy): void {
  const c = this[kCase]
  if (c !== undefined) { c.pending = undefined; c.abandon('body_too_large') }
}
export function onCopyAborted (this: TaggedCopy): void {
  const c = this[kCase]
  if (c !== undefined) { c.pending = undefined; c.abandon('body_aborted') }
}

function runCompare (c: ShadowCase): void {
  try {
    c.mirror.compareCase(c)
  } catch (err) {
    c.mirror.fault(err)
  }
}

export function primarySide (c: ShadowCase): Side {
  return { status: c.primaryStatus, headers: headerRecord(c.primaryHeaders), body: c.primaryOver ? undefined : Buffer.concat(c.primaryChunks), bytes: c.primaryBytes }
}

export function callSide (call: ShadowCall): Side {
  return { status: call.status, headers: headerRecord(call.headers), body: call.body(), bytes: call.bytes, ...(call.error === undefined ? {} : { error: call.error }) }
}

export function sample (body: Buffer | undefined): string | undefined {
  if (body === undefined || body.length === 0) return undefined
  return body.subarray(0, BODY_SAMPLE).toString('utf8')
}

/** The request headers for a copy: the primary's upstream headers, the member's host where the route asks, and the mark. */
export function copyHeaders (x: Exchange, header: string): string[] {
  const out: string[] = []
  const src = x.upstreamHeaders
  for (let i = 0; i + 1 < src.length; i += 2) {
    const n = (src[i] as string).toLowerCase()
    // The copy carries its body as one buffer: undici sets its length.
    if (n === 'content-length' || n === 'transfer-encoding' || n === 'expect' || n === header) continue
    out.push(src[i] as string, src[i + 1] as string)
  }
  out.push(header, '1')
  return out
}

export function withHost (headers: readonly string[], x: Exchange, m: Member): string[] {
  const mode = x.action.hostHeader
  if (mode !== 'backend') return [...headers]
  const out = [...headers]
  for (let i = 0; i < out.length; i += 2) if ((out[i] as string).toLowerCase() === 'host') out[i + 1] = m.backend.host
  return out
}


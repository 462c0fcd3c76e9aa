// Schemas for the value types every part of the config shares (durations, addresses); imports no other schema.
import { z } from 'zod'
import { parseDuration } from './duration.js'
import { parseAddress } from './address.js'

export const duration = z.string({ error: 'expected a duration string such as "150ms", "2s" or "5m"' })
  .transform((s, ctx) => {
    const ms = parseDuration(s)
    if (ms === undefined) {
      ctx.addIssue({ code: 'custom', message: `"${s}" is not a duration: write a number with a unit, e.g. "150ms", "2s", "5m", "1h"` })
      return z.NEVER
    }
    return ms
  })

export const address = z.string().transform((s, ctx) => {
  const a = parseAddress(s)
  if (a === undefined) {
    ctx.addIssue({ code: 'custom', message: `"${s}" is not a listen address: write "HOST:PORT", e.g. "127.0.0.1:8080" or "[::1]:8080"` })
    return z.NEVER
  }
  return a
})


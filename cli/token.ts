// `edge-proxy token`: prints a signed HS256 tunnel token.
import { parseArgs } from 'node:util'
import { parseDuration } from '../config/duration.js'
import { newSecret, resolveSigningKey, signToken } from '../packer/token.js'
import { TunnelError } from '../packer/errors.js'

export const TOKEN_HELP = `Usage: edge-proxy token --secret SPEC --name NAME [--name NAME ...] [--ttl 30d] [--sub ID]
       edge-proxy token --new-secret

  --secret SPEC   the edge's [tunnel] secret: "env:NAME", "file:PATH" or the literal key (at least 32 bytes)
  --new-secret    print a new random secret for [tunnel] secret (32 random bytes, base64url) and exit
  --name NAME     a name the token may claim (repeatable); "*.x.test" only if the edge's allow covers it
  --ttl DURATION  lifetime (default 30d)
  --sub ID        subject recorded in the token (default "tunnel")
`

export function runTokenCommand (argv: string[], out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): number {
  let values: { secret?: string, name?: string[], ttl?: string, sub?: string, help?: boolean, 'new-secret'?: boolean }
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { secret: { type: 'string' }, name: { type: 'string', multiple: true }, ttl: { type: 'string' }, sub: { type: 'string' }, 'new-secret': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    }))
  } catch (e) {
    err.write(`edge-proxy token: ${(e as Error).message}\n\n${TOKEN_HELP}`)
    return 2
  }
  if (values.help === true) { out.write(TOKEN_HELP); return 0 }
  if (values['new-secret'] === true) { out.write(`${newSecret()}\n`); return 0 }
  const ttlMs = parseDuration(values.ttl ?? '30d')
  const problems: string[] = []
  if (values.secret === undefined) problems.push('--secret is required')
  if (values.name === undefined || values.name.length === 0) problems.push('at least one --name is required')
  if (ttlMs === undefined || ttlMs <= 0) problems.push(`--ttl "${values.ttl}" is not a duration like 12h or 30d`)
  if (problems.length > 0) { err.write(`edge-proxy token: ${problems.join('; ')}\n\n${TOKEN_HELP}`); return 2 }
  try {
    const secret = resolveSigningKey(values.secret!)
    out.write(`${signToken({ sub: values.sub ?? 'tunnel', names: values.name!, ttlMs: ttlMs! }, secret)}\n`)
    return 0
  } catch (e) {
    if (e instanceof TunnelError) { err.write(`edge-proxy token: ${e.message}\n`); return 2 }
    throw e
  }
}

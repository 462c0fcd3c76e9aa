// One errors module: README's "Error codes" table lists exactly config/errors.ts's codes with their HTTP status,
// and every EP_ERR_* literal in the source tree is one of them (a code made up in a file fails here).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { EdgeError, errorCodes, statusByCode, statusFor, type ErrorCode } from '../config/errors.js'
import { TunnelError } from '../packer/errors.js'
import { ConfigError } from '../config/load.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const SOURCE_DIRS = ['proxy', 'packer', 'cli', 'config', 'health']

/** code -> status cell of README's "Error codes" table. */
async function readmeTable (): Promise<Map<string, string>> {
  const text = await readFile(join(ROOT, 'README.md'), 'utf8')
  const start = text.indexOf('\n## Error codes\n')
  assert.ok(start >= 0, 'README has an "Error codes" section')
  const end = text.indexOf('\n## ', start + 1)
  const rows = new Map<string, string>()
  for (const line of text.slice(start, end === -1 ? undefined : end).split('\n')) {
    const m = /^\|\s*`(EP_ERR_[A-Z0-9_]+)`\s*\|\s*([^|]*?)\s*\|/.exec(line)
    if (m === null) continue
    assert.ok(!rows.has(m[1]!), `${m[1]} is listed twice in README`)
    rows.set(m[1]!, m[2]!)
  }
  return rows
}

async function tsFiles (dir: string): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(join(e.parentPath, e.name))
  }
  return out
}

test('README "Error codes" lists exactly the codes of config/errors.ts, with their HTTP status', async () => {
  const rows = await readmeTable()
  const codes = new Set<string>(errorCodes)
  assert.equal(codes.size, errorCodes.length, 'no code is in the list twice')
  for (const c of codes) assert.ok(rows.has(c), `${c} is in config/errors.ts but not in README's table`)
  for (const c of rows.keys()) assert.ok(codes.has(c), `README lists ${c}, which config/errors.ts does not have`)
  for (const c of errorCodes) {
    const status = statusByCode[c]
    assert.equal(rows.get(c), status === undefined ? '-' : String(status), `README's status for ${c}`)
  }
})

test('every EP_ERR_ literal in proxy/, packer/, cli/, config/, health/ is a listed code', async () => {
  const codes = new Set<string>(errorCodes)
  const unknown: string[] = []
  let seen = 0
  for (const dir of SOURCE_DIRS) {
    for (const file of await tsFiles(join(ROOT, dir))) {
      const text = await readFile(file, 'utf8')
      for (const m of text.matchAll(/EP_ERR_[A-Z0-9_]*[A-Z0-9]/g)) {
        seen++
        // A prefix ('EP_ERR_TUNNEL_', `EP_ERR_TOKEN_${string}`) is not a code.
        if (text[m.index + m[0].length] === '_') continue
        if (!codes.has(m[0])) unknown.push(`${file.slice(ROOT.length)}: ${m[0]}`)
      }
    }
  }
  assert.ok(seen > errorCodes.length, `the scan found the codes (${seen} literals)`)
  assert.deepEqual(unknown, [], 'codes used in the source but not in config/errors.ts')
})

test('every error class carries a listed code and maps to its status', () => {
  const errors: { code: ErrorCode }[] = [
    new EdgeError('EP_ERR_NO_ROUTE', 'x'),
    new TunnelError('EP_ERR_TUNNEL_FLOOD', 'x'),
    new ConfigError([{ file: 'f', path: 'a', line: undefined, message: 'm' }]),
  ]
  for (const e of errors) {
    assert.ok(e instanceof EdgeError)
    assert.ok((errorCodes as readonly string[]).includes(e.code))
  }
  assert.equal(errors[2]!.code, 'EP_ERR_CONFIG')
  assert.equal(statusFor('EP_ERR_UPSTREAM_TIMEOUT'), 504)
  assert.equal(statusFor('EP_ERR_TUNNEL_AUTH'), 401)
  assert.equal(statusFor('EP_ERR_TUNNEL_CLOSED'), 500, 'a code without a status is a bug if it reaches a client')
})

// [log] format: "json" (one JSON object a line) or "pretty" (pino-pretty's lines for a person); pretty is the
// default only when stderr is a terminal (checked under a real pseudo-terminal with script(1)).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CLI, freePort, tempDir } from './helpers.js'

async function configFile (t: Parameters<typeof tempDir>[0], format: string | undefined): Promise<string> {
  const dir = await tempDir(t)
  const file = join(dir, 'log.toml')
  await writeFile(file, `[admin]\nlisten = "127.0.0.1:0"\n[log]\naccess = "off"\n${format === undefined ? '' : `format = "${format}"\n`}[[listeners]]\nname = "web"\nlisten = "127.0.0.1:${await freePort()}"\n[[routes]]\nrespond = { status = 200, body = "x" }\n`)
  return file
}

/** Runs the edge until it says it listens, stops it, and returns what it wrote to stderr. */
function firstLines (file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, '--config', file], { stdio: ['ignore', 'ignore', 'pipe'] })
    let err = ''
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`no listening line:\n${err}`)) }, 15_000)
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); if (/admin listening/.test(err)) child.kill('SIGTERM') })
    child.on('close', () => { clearTimeout(timer); resolve(err) })
  })
}

test('log format: json lines by default off a terminal, pretty lines when asked', async t => {
  const json = await firstLines(await configFile(t, undefined))
  for (const line of json.trim().split('\n')) assert.doesNotThrow(() => JSON.parse(line), line)
  assert.match(json, /"msg":"listening"/)
  const pretty = await firstLines(await configFile(t, 'pretty'))
  const lines = pretty.trim().split('\n')
  assert.ok(lines.every(l => !l.startsWith('{')), pretty)
  assert.ok(lines.some(l => /INFO.*listening/.test(l)), pretty)
})

test('log format: pretty by default when stderr is a terminal', async t => {
  const file = await configFile(t, undefined)
  const probe = spawnSync('script', ['-qec', 'true', '/dev/null'])
  if (probe.error !== undefined || probe.status !== 0) { t.skip('script(1) cannot open a pseudo-terminal here'); return }
  // `edge-proxy check` runs the same config load; the run itself is checked under script with a short life.
  const cmd = `timeout -s TERM 3 ${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} --config ${JSON.stringify(file)}`
  const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8', timeout: 15_000 })
  assert.match(r.stdout, /INFO.*listening/, r.stdout)
  assert.doesNotMatch(r.stdout, /"msg":"listening"/)
})

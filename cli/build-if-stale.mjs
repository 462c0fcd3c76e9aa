// `npm start`: builds only when a source file is newer than the last build (dist/cli/main.js: tsc rewrites every
// output on each build; an incremental build would not repair a changed or deleted output), so the first
// answer after `npm ci` (whose prepare step has just built) comes at once. Plain JS: it runs before any build.
import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'

const SOURCES = ['cli', 'config', 'proxy', 'packer', 'health', 'ha', 'bench', 'test']
const stamp = (p) => { try { return statSync(p).mtimeMs } catch { return -1 } }

function newest (dir) {
  let t = -1
  let entries
  try { entries = readdirSync(dir, { withFileTypes: true }) } catch { return t }
  for (const e of entries) {
    const p = join(dir, e.name)
    if (e.isDirectory()) t = Math.max(t, newest(p))
    else if (e.name.endsWith('.ts')) t = Math.max(t, stamp(p))
  }
  return t
}

const built = stamp('dist/cli/main.js')
const source = Math.max(stamp('tsconfig.json'), ...SOURCES.map(newest))
if (built < 0 || source > built) {
  const r = spawnSync('npm', ['run', 'build'], { stdio: 'inherit' })
  process.exit(r.status ?? 1)
}

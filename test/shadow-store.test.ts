// The shadow's record store (proxy/mirror/store.ts): JSON lines appended in batches, rotated by size with the
// oldest files removed, and only whole lines ever seen: a tail a crash cut is cut off when the file is opened.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { appendFile, mkdtemp, readFile, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { RecordStore, storeFiles } from '../proxy/mirror/store.js'

test('records are whole JSON lines; rotation by size keeps at most maxFiles old files', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'edge-store-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const store = new RecordStore(dir, { rotateBytes: 2000, maxFiles: 3 })
  for (let i = 0; i < 200; i++) {
    store.append({ i, pad: 'x'.repeat(50) })
    if (i % 20 === 0) await store.flush()
  }
  await store.close()
  const files = await storeFiles(dir)
  assert.ok(files.length <= 4, `at most 3 rotated files and the live one (got ${files.length})`)
  assert.ok(files.length >= 2, 'it rotated')
  const seen: number[] = []
  for (const f of files) {
    const text = await readFile(f, 'utf8')
    assert.ok(text.endsWith('\n'))
    for (const line of text.split('\n')) if (line !== '') seen.push((JSON.parse(line) as { i: number }).i)
  }
  // The oldest files went; what is left is the newest records, in order, none cut.
  assert.equal(seen[seen.length - 1], 199)
  for (let k = 1; k < seen.length; k++) assert.equal(seen[k], (seen[k - 1] as number) + 1)
})

test('a half-written last line (a crash mid-write) is cut off when the store opens the file again', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'edge-store-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const first = new RecordStore(dir)
  first.append({ n: 1 })
  await first.close()
  await appendFile(first.file, '{"n":2,"cut')
  const again = new RecordStore(dir)
  again.append({ n: 3 })
  await again.close()
  assert.deepEqual((await readdir(dir)).length, 1)
  assert.equal(await readFile(first.file, 'utf8'), '{"n":1}\n{"n":3}\n')
})

// A read that starts after a purge of its tags is stored, however soon after
// it starts: only a purge that happens while the read is in flight keeps its
// answer out of the cache. (Purges are counted, not timed: a read in the
// same millisecond as the purge before it used to be thrown away.)
import t from 'tap'
import { buildFromFiles } from '../helpers/gateway.js'
import { upstream } from '../helpers/upstream.js'

t.test('a read right after a purge of its tag is stored and then served as a HIT', async t => {
  let n = 0
  const up = await upstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ n: ++n }))
  })
  const app = await buildFromFiles(t, {
    'gateway.yaml': JSON.stringify({
      policies: { public: { auth: 'none' } },
      services: { backend: { urls: [up.url], timeout: '2s' } },
      routes: [
        { id: 'read', method: 'GET', path: '/item', policy: 'public', proxy: { service: 'backend' }, cache: { ttl: '1m', tags: ['item'] } },
        { id: 'write', method: 'POST', path: '/item', policy: 'public', proxy: { service: 'backend' }, invalidates: ['item'] },
      ],
    }),
  })
  // In-process requests follow each other within a millisecond most of the
  // time; twenty rounds make a same-millisecond read and purge certain.
  for (let round = 0; round < 20; round++) {
    t.equal((await app.inject({ method: 'POST', url: '/item' })).statusCode, 200)
    const miss = await app.inject({ url: '/item' })
    t.equal(miss.headers['x-cache'], 'MISS', `round ${round}: the read after the purge goes upstream`)
    const hit = await app.inject({ url: '/item' })
    t.equal(hit.headers['x-cache'], 'HIT', `round ${round}: and its answer was stored`)
    t.same(hit.json(), miss.json())
  }
  t.equal(up.hits(), 40, 'one upstream call per write and per first read')
})

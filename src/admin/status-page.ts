// The admin listener's status page: one self-contained HTML document (no
// build step, no framework) that refreshes itself from the admin JSON
// endpoints and /metrics every two seconds: routes, breaker states, cache hit
// ratio and request rates. With an admin token configured it asks for the
// token once and keeps it in sessionStorage for this tab only.

export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Portico status</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1f2937; background: #f9fafb; }
  h1 { font-size: 1.3rem; margin: 0 0 .2rem; }
  h2 { font-size: 1.05rem; margin: 1.5rem 0 .5rem; }
  .meta { color: #6b7280; margin-bottom: 1rem; }
  table { border-collapse: collapse; width: 100%; background: #fff; box-shadow: 0 1px 2px #0001; }
  th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #e5e7eb; }
  th { background: #f3f4f6; font-weight: 600; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .state { display: inline-block; padding: .05rem .5rem; border-radius: 1rem; font-weight: 600; }
  .state-closed { background: #dcfce7; color: #166534; }
  .state-halfOpen { background: #fef9c3; color: #854d0e; }
  .state-open { background: #fee2e2; color: #991b1b; }
  .error { color: #991b1b; }
  #token-form { display: none; margin: 1rem 0; }
</style>
</head>
<body>
<h1>Portico</h1>
<div class="meta">Refreshes every 2 s · <span id="updated">loading…</span> <span id="error" class="error"></span></div>
<form id="token-form"><label>Admin token <input id="token" type="password" autocomplete="off"></label> <button>Use</button></form>

<h2>Circuit breakers</h2>
<table id="breakers"><thead><tr><th>Service</th><th>State</th><th>Retry after</th><th>Calls</th><th>Failures</th><th>Rejected</th><th>Instances</th></tr></thead><tbody></tbody></table>

<h2>Routes</h2>
<table id="routes"><thead><tr><th>Route</th><th>Methods</th><th>Path</th><th>Policy</th><th>Target</th><th>Req/s</th><th>Errors/s</th><th>Cache hit ratio</th></tr></thead><tbody></tbody></table>

<script>
(function () {
  var previous = null
  function headers () {
    var token = sessionStorage.getItem('portico-admin-token')
    return token ? { authorization: 'Bearer ' + token } : {}
  }
  function get (path, asText) {
    return fetch(path, { headers: headers() }).then(function (res) {
      if (res.status === 401) { document.getElementById('token-form').style.display = 'block'; throw new Error('admin token required') }
      if (!res.ok) throw new Error(path + ': ' + res.status)
      return asText ? res.text() : res.json()
    })
  }
  function text (value) { return document.createTextNode(value === undefined || value === null ? '' : String(value)) }
  function row (cells) {
    var tr = document.createElement('tr')
    cells.forEach(function (c) {
      var td = document.createElement('td')
      if (c && c.node) td.appendChild(c.node); else td.appendChild(text(c && c.value !== undefined ? c.value : c))
      if (c && c.num) td.className = 'num'
      tr.appendChild(td)
    })
    return tr
  }
  // Sums of a counter by label value, from Prometheus text.
  function counters (metrics, name, by) {
    var out = {}
    metrics.split('\\n').forEach(function (line) {
      if (line.indexOf(name + '{') !== 0) return
      var labels = {}
      line.slice(line.indexOf('{') + 1, line.lastIndexOf('}')).replace(/(\\w+)="([^"]*)"/g, function (_m, k, v) { labels[k] = v })
      var value = Number(line.slice(line.lastIndexOf(' ') + 1))
      var key = by.map(function (b) { return labels[b] }).join('|')
      out[key] = (out[key] || 0) + value
    })
    return out
  }
  function refresh () {
    Promise.all([get('/admin/breakers'), get('/admin/routes'), get('/metrics', true)]).then(function (r) {
      var breakers = r[0], routes = r[1], metrics = r[2], now = Date.now()
      var requests = counters(metrics, 'portico_http_requests_total', ['route'])
      var errors = counters(metrics, 'portico_http_requests_total', ['route', 'status_class'])
      var cache = counters(metrics, 'portico_cache_requests_total', ['route', 'result'])
      var rate = function (key, total) {
        if (!previous) return '–'
        var seconds = (now - previous.at) / 1000
        return ((total - (previous.values[key] || 0)) / seconds).toFixed(1)
      }
      var tb = document.querySelector('#breakers tbody'); tb.textContent = ''
      breakers.forEach(function (b) {
        var badge = document.createElement('span'); badge.className = 'state state-' + b.state; badge.textContent = b.state
        badge.setAttribute('data-service', b.service)
        var healthy = b.instances.filter(function (i) { return i.healthy }).length
        tb.appendChild(row([b.service, { node: badge }, b.retryAfter ? b.retryAfter + ' s' : '', { value: b.stats.fires, num: true }, { value: b.stats.failures, num: true }, { value: b.stats.rejects, num: true }, healthy + '/' + b.instances.length + ' healthy']))
      })
      var values = {}
      var tr = document.querySelector('#routes tbody'); tr.textContent = ''
      routes.forEach(function (route) {
        var total = requests[route.id] || 0
        var failed = (errors[route.id + '|5xx'] || 0)
        values[route.id] = total; values[route.id + '|5xx'] = failed
        var hits = (cache[route.id + '|hit'] || 0) + (cache[route.id + '|stale'] || 0)
        var lookups = hits + (cache[route.id + '|miss'] || 0) + (cache[route.id + '|bypass'] || 0)
        tr.appendChild(row([route.id, route.methods.join(', '), route.path, route.policy, route.target,
          { value: rate(route.id, total), num: true }, { value: rate(route.id + '|5xx', failed), num: true },
          { value: route.cache ? (lookups ? Math.round(100 * hits / lookups) + ' %' : '–') : 'not cached', num: true }]))
      })
      previous = { at: now, values: values }
      document.getElementById('updated').textContent = 'updated ' + new Date(now).toLocaleTimeString()
      document.getElementById('error').textContent = ''
    }).catch(function (err) { document.getElementById('error').textContent = err.message })
  }
  document.getElementById('token-form').addEventListener('submit', function (e) {
    e.preventDefault()
    sessionStorage.setItem('portico-admin-token', document.getElementById('token').value)
    document.getElementById('token-form').style.display = 'none'
    refresh()
  })
  refresh()
  setInterval(refresh, 2000)
})()
</script>
</body>
</html>
`

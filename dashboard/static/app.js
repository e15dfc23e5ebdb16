// Live updates over server-sent events. Without JavaScript the pages still work: reload to refresh.
(function () {
  'use strict';
  if (!window.EventSource) return;
  var source = new EventSource('/events');
  var detail = document.getElementById('request-detail');

  // A change made between rendering this page and subscribing to /events (or while the stream
  // was down) is announced to nobody: each time the stream (re)opens, catch up on what the page
  // still shows as pending. The server subscribes before it answers /events, so later changes
  // arrive as events.
  source.addEventListener('open', function () {
    if (detail) {
      if (detail.dataset.status !== 'pending') return;
      fetch('/api/requests/' + encodeURIComponent(detail.dataset.requestId))
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (state) {
          if (state && state.status !== detail.dataset.status) window.location.reload();
        })
        .catch(function () {});
      return;
    }
    if (!document.querySelector('#requests tr[data-status="pending"]')) return;
    fetch(window.location.href, { headers: { accept: 'text/html' } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, 'text/html');
        document.querySelectorAll('#requests tr[data-status="pending"]').forEach(function (row) {
          var settled = fresh.getElementById(row.id);
          if (settled && settled.dataset.status !== 'pending') row.replaceWith(document.importNode(settled, true));
        });
      })
      .catch(function () {});
  });

  source.addEventListener('request', function (event) {
    var data = JSON.parse(event.data);
    if (detail) {
      // The detail page re-renders server-side once its request is settled.
      if (detail.dataset.requestId === data.id && detail.dataset.status !== data.status) {
        window.location.reload();
      }
      return;
    }
    var table = document.getElementById('requests');
    var body = table && table.querySelector('tbody');
    if (!body) return;
    var row = document.getElementById('req-' + data.id);
    // Respect the table's filter: a row that no longer matches leaves, one that never did stays out.
    var kind = table.dataset.filterKind, status = table.dataset.filterStatus;
    var template = document.createElement('tbody');
    template.innerHTML = data.html;
    var fresh = template.firstElementChild;
    var matches = fresh && (!kind || fresh.dataset.kind === kind) && (!status || fresh.dataset.status === status);
    if (!matches) {
      if (row) row.remove();
      return;
    }
    if (row) {
      row.replaceWith(fresh);
    } else {
      body.insertBefore(fresh, body.firstChild);
      var empty = document.getElementById('no-requests');
      if (empty) empty.remove();
    }
  });

  source.addEventListener('uncorrelated', function (event) {
    var list = document.getElementById('uncorrelated');
    if (list) list.insertAdjacentHTML('afterbegin', JSON.parse(event.data).html);
  });

  // Says in `container` why a pending request waits, or removes what it said: as the server
  // renders it, after a <br> in a table cell (`small`), after a space in a sentence (`span`).
  function explainWait(container, why, tag) {
    var note = container.querySelector('.waiting-because');
    if (!why) {
      if (!note) return;
      var before = note.previousSibling;
      if (before && (before.nodeName === 'BR' || /^\s*$/.test(before.textContent))) before.remove();
      note.remove();
      return;
    }
    if (!note) {
      container.appendChild(tag === 'small' ? document.createElement('br') : document.createTextNode(' '));
      note = document.createElement(tag);
      note.className = 'waiting-because';
      container.appendChild(note);
    }
    note.textContent = why;
  }

  source.addEventListener('broker', function (event) {
    var data = JSON.parse(event.data);
    var banner = document.getElementById('broker-banner');
    if (banner) {
      banner.textContent = data.message;
      banner.classList.toggle('ok', data.green);
    }
    // Pending requests already shown learn why they wait (a worker stopped), or that they no
    // longer do for a known reason.
    var waiting = data.waiting || {};
    var hint = document.getElementById('pending-hint');
    if (detail && hint) explainWait(hint, waiting[detail.dataset.kind], 'span');
    document.querySelectorAll('#requests tr[data-status="pending"]').forEach(function (row) {
      var cell = row.querySelector('td.outcome');
      if (cell) explainWait(cell, waiting[row.dataset.kind], 'small');
    });
  });

  source.addEventListener('resync', function () {
    window.location.reload();
  });
})();

// The charts page: the charts block again from /charts/live every 2 s, whether or not the
// browser has EventSource. Without JavaScript the page reloads itself instead (<noscript>).
(function () {
  'use strict';
  var stamp = document.getElementById('charts-refreshed');
  if (!document.getElementById('charts') || !stamp || !window.fetch || !window.DOMParser) return;
  var utcTime = function (ms) { return new Date(ms).toISOString().slice(11, 19); };
  stamp.textContent = 'Live: the charts refresh every 2 seconds.';
  stamp.hidden = false;
  var fetching = false; // a slow answer is not asked for again meanwhile
  window.setInterval(function () {
    if (fetching) return;
    fetching = true;
    fetch('/charts/live', { headers: { accept: 'text/html' } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        var current = document.getElementById('charts');
        var fresh = html && new DOMParser().parseFromString(html, 'text/html').getElementById('charts');
        if (!current || !fresh) return;
        current.replaceWith(document.importNode(fresh, true));
        stamp.textContent = 'Live: refreshed at ' + utcTime(Number(fresh.dataset.generatedMs)) + ' UTC, every 2 seconds.';
      })
      .catch(function () {})
      .then(function () { fetching = false; });
  }, 2000);
})();

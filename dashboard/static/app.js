// Live updates over server-sent events. Without JavaScript the pages still work: reload to refresh.
(function () {
  'use strict';
  if (!window.EventSource) return;
  var source = new EventSource('/events');
  var detail = document.getElementById('request-detail');

  source.addEventListener('request', function (event) {
    var data = JSON.parse(event.data);
    if (detail) {
      // The detail page re-renders server-side once its request is settled.
      if (detail.dataset.requestId === data.id && detail.dataset.status !== data.status) {
        window.location.reload();
      }
      return;
    }
    var body = document.querySelector('#requests tbody');
    if (!body) return;
    var row = document.getElementById('req-' + data.id);
    if (row) {
      row.outerHTML = data.html;
    } else {
      body.insertAdjacentHTML('afterbegin', data.html);
      var empty = document.getElementById('no-requests');
      if (empty) empty.remove();
    }
  });

  source.addEventListener('uncorrelated', function (event) {
    var list = document.getElementById('uncorrelated');
    if (list) list.insertAdjacentHTML('afterbegin', JSON.parse(event.data).html);
  });

  source.addEventListener('broker', function (event) {
    var data = JSON.parse(event.data);
    var banner = document.getElementById('broker-banner');
    if (!banner) return;
    banner.textContent = data.message;
    banner.classList.toggle('ok', data.healthy);
  });

  source.addEventListener('resync', function () {
    window.location.reload();
  });
})();

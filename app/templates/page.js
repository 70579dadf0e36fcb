"use strict";
(function () {
  var data = JSON.parse(document.getElementById("maintenance-data").textContent);
  var fill = document.getElementById("fill");
  if (fill) { fill.style.width = fill.getAttribute("data-percent") + "%"; }
  var delay = Math.max(5, Math.min(60, data.retry_after || 30)) * 1000;
  function poll() {
    fetch(location.href, { method: "HEAD", cache: "no-store" }).then(function (r) {
      if (r.status !== 503) { location.reload(); return; }
      setTimeout(poll, delay);
    }, function () { setTimeout(poll, delay); });
  }
  setTimeout(poll, delay);
})();

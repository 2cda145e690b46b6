// The live inbox: when the held requests change (a new one, or another
// admin's decision), the table is fetched again, keeping what is ticked.
// Everything works without it; it only saves reloading.
(function () {
  "use strict";
  var rows = document.getElementById("rows");
  var live = document.getElementById("live");
  if (!rows || !live) return;
  var all = document.getElementById("all");
  if (all) {
    all.hidden = false;
    all.addEventListener("change", function () {
      rows.querySelectorAll('input[name="id"]').forEach(function (c) { c.checked = all.checked; });
    });
  }
  var rowsURL = live.getAttribute("data-rows");
  var busy = false, dirty = false;
  function refresh() {
    if (busy) { dirty = true; return; } // once this fetch ends
    busy = true;
    dirty = false;
    var ticked = {};
    rows.querySelectorAll('input[name="id"]:checked').forEach(function (c) { ticked[c.value] = true; });
    fetch(rowsURL, { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) throw new Error(r.status);
      var held = r.headers.get("X-Held");
      return r.text().then(function (html) {
        rows.innerHTML = html;
        rows.querySelectorAll('input[name="id"]').forEach(function (c) { if (ticked[c.value]) c.checked = true; });
        var shown = rows.querySelectorAll('input[name="id"]').length;
        live.textContent = shown + " shown of " + held + " held";
        var count = document.getElementById("held-count");
        if (count) count.textContent = held;
        document.body.setAttribute("data-refreshed", String(Date.now()));
      });
    }).catch(function () {}).then(function () {
      busy = false;
      if (dirty) refresh();
    });
  }
  if (window.EventSource) {
    var es = new EventSource("/inbox/events");
    es.addEventListener("changed", refresh);
    es.addEventListener("ended", function () { es.close(); });
    window.addEventListener("pagehide", function () { es.close(); });
  } else {
    setInterval(refresh, 5000);
  }
})();

// tagd web: progressive enhancement only; every page works without this file.
// - the gallery loads the next page when its end scrolls into view (the "Next" link stays for no-JS);
// - the selection toolbar says how many photos are selected.
(function () {
  "use strict";
  function selectedCount() {
    var n = document.querySelectorAll('input[name="ids"][form="selection"]:checked').length;
    var label = document.getElementById("selected-count");
    if (label) label.textContent = n ? n + " selected:" : "Select photos, then";
  }
  document.addEventListener("change", function (e) {
    if (e.target && e.target.name === "ids") selectedCount();
  });
  var grid = document.getElementById("grid");
  var next = document.getElementById("next");
  if (!grid || !next || !("IntersectionObserver" in window)) return;
  var loading = false;
  var observer = new IntersectionObserver(function (entries) {
    if (!entries[0].isIntersecting || loading || !next) return;
    loading = true;
    fetch(next.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var more = doc.getElementById("grid");
        if (more) Array.prototype.forEach.call(more.children, function (li) { grid.appendChild(document.importNode(li, true)); });
        var link = doc.getElementById("next");
        if (link) { next.href = link.href; } else { next.remove(); next = null; observer.disconnect(); }
        loading = false;
      })
      .catch(function () { observer.disconnect(); });
  }, { rootMargin: "800px" });
  observer.observe(next);
})();

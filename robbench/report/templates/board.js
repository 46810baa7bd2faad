/* The page's only script: sortable columns and a ranking block that stays in view. The page reads the
   same without it (the ranking columns come first; the table scrolls sideways). */
(function () {
  function key(td) {
    var v = td.getAttribute("data-v");
    if (v !== null) return parseFloat(v);
    var n = parseFloat(td.textContent);
    return isNaN(n) ? td.textContent.trim() : n;
  }
  function compare(x, y, asc) {
    var a = key(x), b = key(y);
    var an = typeof a === "number" && !isNaN(a), bn = typeof b === "number" && !isNaN(b);
    if (an && bn) return asc ? a - b : b - a;
    if (an !== bn) return an ? -1 : 1; /* a missing value sorts last either way */
    var s = String(a).localeCompare(String(b));
    return asc ? s : -s;
  }
  document.querySelectorAll(".sortable > table").forEach(function (t) {
    var heads = t.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, i) {
      th.setAttribute("data-sortable", "");
      th.title = "sort by this column";
      th.addEventListener("click", function () {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = t.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) { return compare(a.cells[i], b.cells[i], asc); });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  /* Pin the longest run of ranking columns that leaves a tenth of the box for the scrolling columns. */
  function pin() {
    document.querySelectorAll("table.board").forEach(function (t) {
      var pins = t.tHead.rows[0].querySelectorAll("th.pin"), lefts = [], total = 0, n = 0;
      Array.prototype.forEach.call(t.rows, function (r) {
        for (var k = 0; k < pins.length; k++) { r.cells[k].style.position = ""; r.cells[k].style.left = ""; }
      });
      for (var k = 0; k < pins.length; k++) {
        lefts.push(total);
        total += pins[k].getBoundingClientRect().width;
        if (total <= 0.9 * t.parentNode.clientWidth) n = k + 1;
      }
      Array.prototype.forEach.call(t.rows, function (r) {
        for (var k = 0; k < n; k++) {
          r.cells[k].style.position = "sticky";
          r.cells[k].style.left = lefts[k] + "px";
          r.cells[k].style.zIndex = 1;
        }
      });
    });
  }
  window.addEventListener("load", pin);
  window.addEventListener("resize", pin);
})();

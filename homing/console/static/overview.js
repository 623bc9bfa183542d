// Live overview: polls /console/api/overview and redraws the numbers, charts and tables from
// it. The server computes every coordinate; this only copies them into the page.
"use strict";

(function () {
  var root = document.querySelector("[data-live]");
  if (!root) {
    return;
  }
  var SVG = "http://www.w3.org/2000/svg";
  var TAGS = { line: 1, polyline: 1, text: 1, rect: 1, circle: 1 };
  var PERIOD_MS = 5000;

  function drawChart(svg, prims) {
    var nodes = [];
    prims.forEach(function (prim) {
      if (!TAGS[prim.tag]) {
        return;
      }
      var node = document.createElementNS(SVG, prim.tag);
      Object.keys(prim.attrs).forEach(function (name) {
        node.setAttribute(name, String(prim.attrs[name]));
      });
      node.textContent = prim.text;
      nodes.push(node);
    });
    svg.replaceChildren.apply(svg, nodes);
  }

  function fillTable(body, rows) {
    if (!rows.length) {
      var tr = document.createElement("tr");
      var td = document.createElement("td");
      tr.className = "empty";
      td.colSpan = Number(body.dataset.columns || 1);
      td.textContent = body.dataset.empty || "";
      tr.appendChild(td);
      body.replaceChildren(tr);
      return;
    }
    var trs = rows.map(function (row) {
      var tr = document.createElement("tr");
      row.forEach(function (cell) {
        var td = document.createElement("td");
        if (cell.cls) {
          td.className = cell.cls;
        }
        if (cell.href && cell.href.indexOf("/console/") === 0) {
          var a = document.createElement("a");
          a.href = cell.href;
          a.textContent = cell.text;
          td.appendChild(a);
        } else if (cell.badge) {
          var badge = document.createElement("span");
          badge.className = "badge " + cell.badge;
          badge.textContent = cell.text;
          td.appendChild(badge);
        } else {
          td.textContent = cell.text;
        }
        tr.appendChild(td);
      });
      return tr;
    });
    body.replaceChildren.apply(body, trs);
  }

  function apply(data) {
    document.querySelectorAll("[data-stat]").forEach(function (node) {
      var value = data.stats[node.dataset.stat];
      if (value !== undefined) {
        node.textContent = value;
      }
    });
    document.querySelectorAll("svg[data-chart]").forEach(function (svg) {
      var prims = data.charts[svg.dataset.chart];
      if (prims) {
        drawChart(svg, prims);
      }
    });
    document.querySelectorAll("[data-table]").forEach(function (body) {
      var rows = data.tables[body.dataset.table];
      if (rows) {
        fillTable(body, rows);
      }
    });
    var updated = document.querySelector("[data-updated]");
    if (updated) {
      updated.textContent = data.updated;
    }
    root.classList.remove("stale");
  }

  function poll() {
    if (document.hidden) {
      setTimeout(poll, PERIOD_MS);
      return;
    }
    fetch(root.dataset.live, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) { return response.ok ? response.json() : Promise.reject(); })
      .then(apply)
      .catch(function () { root.classList.add("stale"); })
      .then(function () { setTimeout(poll, PERIOD_MS); });
  }

  setTimeout(poll, PERIOD_MS);
})();

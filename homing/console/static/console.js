// Small enhancements for every console page. The pages work without this file; it only adds
// confirmation dialogs, select-all, the signing-key reveal and the live cron preview.
// Served as a file because the Content-Security-Policy allows no inline script.
"use strict";

(function () {
  // A form (or the button that submits it) with data-confirm asks first. When the user agrees,
  // confirm=yes tells the server to skip its own confirmation page.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var button = event.submitter;
    var question = (button && button.dataset.confirm) || form.dataset.confirm;
    if (!question) {
      return;
    }
    if (!window.confirm(question)) {
      event.preventDefault();
      return;
    }
    var flag = form.querySelector('input[name="confirm"]');
    if (!flag) {
      flag = document.createElement("input");
      flag.type = "hidden";
      flag.name = "confirm";
      form.appendChild(flag);
    }
    flag.value = "yes";
  });

  document.querySelectorAll("[data-select-all]").forEach(function (box) {
    box.addEventListener("change", function () {
      var selector = 'input[type="checkbox"][name="' + box.dataset.selectAll + '"]';
      document.querySelectorAll(selector).forEach(function (other) {
        other.checked = box.checked;
      });
    });
  });

  // Signing keys are masked in the page; the full values are fetched only when asked for.
  var reveal = document.querySelector("[data-reveal]");
  var keyTable = document.querySelector("[data-keys]");
  if (reveal && keyTable) {
    var masked = {};
    var shown = false;
    reveal.hidden = false;
    reveal.addEventListener("click", function () {
      var cells = keyTable.querySelectorAll("[data-key]");
      if (shown) {
        cells.forEach(function (cell) { cell.textContent = masked[cell.dataset.key]; });
        reveal.textContent = "Reveal keys";
        shown = false;
        return;
      }
      fetch(keyTable.dataset.keys, { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : Promise.reject(); })
        .then(function (keys) {
          cells.forEach(function (cell) {
            masked[cell.dataset.key] = cell.textContent;
            cell.textContent = keys[cell.dataset.key];
          });
          reveal.textContent = "Hide keys";
          shown = true;
        })
        .catch(function () { reveal.textContent = "Could not load the keys"; });
    });
  }

  // Live preview of the next fires while a cron expression is typed.
  var cronForm = document.querySelector("[data-cron-form]");
  if (cronForm) {
    var cron = cronForm.querySelector("[data-cron]");
    var zone = cronForm.querySelector("[data-tz]");
    var box = cronForm.querySelector("[data-cron-preview]");
    var timer = null;
    var show = function (items, error) {
      var title = document.createElement("h3");
      title.textContent = "Next five fires";
      var body;
      if (error) {
        body = document.createElement("p");
        body.className = "error-text";
        body.textContent = error;
      } else {
        body = document.createElement("ol");
        items.forEach(function (fire) {
          var item = document.createElement("li");
          var local = document.createElement("strong");
          local.textContent = fire.local;
          var utc = document.createElement("span");
          utc.className = "muted";
          utc.textContent = " " + fire.utc;
          item.append(local, utc);
          body.appendChild(item);
        });
      }
      box.replaceChildren(title, body);
    };
    var update = function () {
      if (!cron.value.trim()) {
        return;
      }
      var query = new URLSearchParams({ cron: cron.value, tz: zone.value || "UTC" });
      fetch("/console/api/cron-preview?" + query.toString(), { credentials: "same-origin" })
        .then(function (response) {
          return response.json().then(function (data) { return [response.ok, data]; });
        })
        .then(function (result) {
          show(result[0] ? result[1].fires : [], result[0] ? null : result[1].error);
        })
        .catch(function () { /* offline: keep the last preview */ });
    };
    [cron, zone].forEach(function (input) {
      input.addEventListener("input", function () {
        clearTimeout(timer);
        timer = setTimeout(update, 250);
      });
    });
  }
})();

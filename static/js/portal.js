/* The portal works without this script. With it:
   - a form's error summary takes the focus, so it is read out first;
   - a request's status page looks again every 45 s (sooner when the removal is due) while the
     request may change, swaps in the fresh part, and reads out the news when the state changes.
   Nothing happens in a hidden tab, and the page never reloads under the reader. */
(function () {
  "use strict";

  var summary = document.querySelector(".error-summary");
  if (summary) summary.focus();

  var region = document.getElementById("request-status");
  if (!region || !window.fetch || !window.DOMParser) return;

  function delay() {
    var every = Number(region.dataset.refresh) * 1000;
    var due = Number(region.dataset.due) * 1000 - Date.now() + 3000;
    return due > 0 && due < every ? Math.max(due, 5000) : every;
  }

  function schedule() {
    if (region.dataset.refresh) window.setTimeout(look, delay());
  }

  function look() {
    if (document.visibilityState === "hidden") {
      document.addEventListener("visibilitychange", look, { once: true });
      return;
    }
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) { return response.ok ? response.text() : ""; })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("request-status");
        if (fresh) update(fresh);
        schedule();
      })
      .catch(schedule);
  }

  function update(fresh) {
    var changed = fresh.dataset.state !== region.dataset.state;
    region.innerHTML = fresh.innerHTML;
    region.dataset.state = fresh.dataset.state;
    if (fresh.dataset.refresh) {
      region.dataset.refresh = fresh.dataset.refresh;
    } else {
      delete region.dataset.refresh;
    }
    region.dataset.due = fresh.dataset.due || "";
    var news = region.querySelector(".news");
    if (changed && news) document.getElementById("status-news").textContent = news.textContent.trim();
  }

  schedule();
})();

/* A live countdown to a request's removal on its status page. Without this script the page
   says the time in words, and when the moment is close, when to reload it (portal.js keeps
   the page fresh instead, so that hint is hidden here).
   Each <time data-countdown="UNIX SECONDS"> shows h:mm:ss left, once a second; the paragraph
   around it is hidden until then. role="timer" keeps screen readers from reading every tick. */
(function () {
  "use strict";

  function pad(n) { return n < 10 ? "0" + n : String(n); }

  function text(seconds) {
    var h = Math.floor(seconds / 3600), m = Math.floor(seconds / 60) % 60, s = seconds % 60;
    return (h ? h + ":" + pad(m) : String(m)) + ":" + pad(s);
  }

  function tick() {
    // Looked up every time: portal.js swaps in fresh markup while the state may change.
    var clocks = document.querySelectorAll("time[data-countdown]");
    for (var i = 0; i < clocks.length; i++) {
      var clock = clocks[i];
      var left = Math.max(0, Math.round(Number(clock.dataset.countdown) - Date.now() / 1000));
      clock.textContent = text(left);
      var holder = clock.closest(".countdown");
      if (holder) holder.hidden = false;
    }
  }

  var hints = document.querySelectorAll(".reload-hint");
  for (var i = 0; i < hints.length; i++) hints[i].hidden = true;
  tick();
  window.setInterval(tick, 1000);
})();

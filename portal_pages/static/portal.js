// Optional enhancement: the portal works without it (plain forms, meta refresh).
(function () {
  var f = document.getElementById("handoff");
  if (f) setTimeout(function () { f.submit(); }, (+f.getAttribute("data-delay") || 0) * 1000);
  var b = document.querySelector("button[data-wait]");
  if (b) {
    var left = +b.getAttribute("data-wait") || 0, label = b.textContent;
    var tick = function () {
      b.disabled = left > 0;
      b.textContent = left > 0 ? label + " (" + left + ")" : label;
      if (left-- > 0) setTimeout(tick, 1000);
    };
    tick();
  }
})();

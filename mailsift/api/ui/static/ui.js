// mailsift review pages: the only script. Loaded from our own origin (CSP: script-src 'self').
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var all = document.getElementById("select-all");
  if (!all) { return; }
  all.addEventListener("change", function () {
    var boxes = document.querySelectorAll("input.pick");
    for (var i = 0; i < boxes.length; i++) { boxes[i].checked = all.checked; }
  });
});

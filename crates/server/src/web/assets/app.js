// hookwarden console: the few things plain HTML cannot do. Everything works
// without it; it only asks before destructive actions and ticks checkboxes.
"use strict";
document.addEventListener("submit", function (e) {
  var button = e.submitter;
  var question = button && button.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    e.preventDefault();
  }
});
document.addEventListener("change", function (e) {
  var box = e.target;
  if (!box.hasAttribute || !box.hasAttribute("data-select-all")) {
    return;
  }
  var form = box.form;
  if (!form) {
    return;
  }
  var boxes = form.querySelectorAll('input[type="checkbox"][name="ids"]');
  for (var i = 0; i < boxes.length; i++) {
    boxes[i].checked = box.checked;
  }
});
// A portal link's page: open the portal at once (the button does it too).
document.addEventListener("DOMContentLoaded", function () {
  var form = document.querySelector("form[data-auto-submit]");
  if (form) {
    form.submit();
  }
});

// What the pages do in the browser, kept in this file so that the Content-Security-Policy can
// forbid every inline script: a form that moves money is sent once (its button is disabled as
// it goes), a form that asks first asks, and a receipt's button prints it.
"use strict";

document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
    return;
  }
  if (form.hasAttribute("data-once")) {
    var button = form.querySelector("button");
    if (button) {
      button.disabled = true;
    }
  }
});

document.addEventListener("click", function (event) {
  if (event.target.closest("[data-print]")) {
    window.print();
  }
});

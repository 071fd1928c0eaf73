// The copy button next to a key shown once. Buttons start hidden, so without JavaScript there is no dead button.
(function () {
  function reveal(root) {
    root.querySelectorAll("[data-copy][hidden]").forEach(function (button) { button.hidden = false; });
  }
  document.addEventListener("DOMContentLoaded", function () { reveal(document); });
  document.addEventListener("htmx:load", function (event) { reveal(event.detail.elt); });
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var input = document.getElementById(button.dataset.copy);
    var status = document.getElementById(input.getAttribute("aria-describedby"));
    input.select();
    navigator.clipboard.writeText(input.value).then(function () {
      status.textContent = "Copied.";
    }, function () {
      status.textContent = "Press Ctrl+C (⌘C) to copy the selected key.";
    });
  });
})();

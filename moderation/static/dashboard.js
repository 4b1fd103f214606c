// Keyboard shortcuts, select-all and bulk confirmation for the moderator dashboard.
// Loaded as a file (no inline script), so the dashboard's strict CSP stays intact.
(function () {
  "use strict";
  var STORE = "dashboard.current";

  function cards() { return Array.prototype.slice.call(document.querySelectorAll(".card[data-id]")); }

  function setCurrent(index, scroll) {
    var list = cards();
    if (!list.length) { return null; }
    index = Math.max(0, Math.min(index, list.length - 1));
    list.forEach(function (c) { c.classList.remove("current"); });
    var card = list[index];
    card.classList.add("current");
    card.focus({ preventScroll: !scroll });
    if (scroll) {
      // The sticky bulk bar covers the top of the page: keep the card below it.
      var bar = document.querySelector(".bulk");
      var covered = bar && getComputedStyle(bar).position === "sticky" ? bar.getBoundingClientRect().height : 0;
      card.style.scrollMarginTop = (covered + 8) + "px";
      card.scrollIntoView({ block: "nearest" });
    }
    try { sessionStorage.setItem(STORE, location.pathname + location.search + "|" + index); } catch (e) { /* private mode */ }
    return card;
  }

  function currentIndex() {
    var list = cards();
    var found = list.findIndex(function (c) { return c.classList.contains("current"); });
    return found;
  }

  function typing(target) {
    var tag = (target && target.tagName) || "";
    if (tag === "INPUT" && (target.type === "checkbox" || target.type === "radio")) { return false; }
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable);
  }

  function updateCount() {
    var boxes = document.querySelectorAll(".card .select");
    var chosen = document.querySelectorAll(".card .select:checked").length;
    var out = document.querySelector(".selected-count");
    if (out) { out.textContent = chosen ? "(" + chosen + ")" : ""; }
    var all = document.getElementById("select-all");
    if (all) {
      all.checked = boxes.length > 0 && chosen === boxes.length;
      all.indeterminate = chosen > 0 && chosen < boxes.length;
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    var all = document.getElementById("select-all");
    if (all) {
      all.addEventListener("change", function () {
        document.querySelectorAll(".card .select").forEach(function (box) { box.checked = all.checked; });
        updateCount();
      });
    }
    document.addEventListener("change", function (event) {
      if (event.target.classList && event.target.classList.contains("select")) { updateCount(); }
    });

    // The queue's form and a comment's own page (no bulk bar there) ask the same questions.
    document.querySelectorAll("form.queue-form").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        var button = event.submitter;
        if (!button) { return; }
        var acted = button.closest(".card[data-id]");
        if (acted && form.id === "queue-form") {
          // After the reload the next card takes this one's place: come back to it there.
          var at = cards().indexOf(acted);
          if (at >= 0) { setCurrent(at, false); }
        }
        if (button.classList.contains("bulk-go")) {
          var action = form.querySelector("#bulk-action");
          var label = action.options[action.selectedIndex].text;
          var count = button.value === "matching"
            ? Number(button.getAttribute("data-count"))
            : form.querySelectorAll(".card .select:checked").length;
          if (!count) { event.preventDefault(); window.alert("Select at least one comment first."); return; }
          var what = button.value === "matching" ? "ALL " + count + " comments matching this filter" : count + " selected comment" + (count === 1 ? "" : "s");
          if (!window.confirm(label + " " + what + "?")) { event.preventDefault(); return; }
          form.querySelector("input[name=confirmed]").value = "yes";
        } else if (button.getAttribute("data-action") === "delete") {
          if (!window.confirm("Delete this comment?")) { event.preventDefault(); }
        }
      });
    });

    // Buttons whose action is hard to take back (disabling an account) ask first.
    document.querySelectorAll("button[data-confirm]").forEach(function (button) {
      button.addEventListener("click", function (event) {
        if (!window.confirm(button.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });

    document.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        var field = document.getElementById(button.getAttribute("data-copy"));
        field.select();
        var done = function () { button.textContent = "Copied"; };
        if (navigator.clipboard) { navigator.clipboard.writeText(field.value).then(done, function () { document.execCommand("copy"); done(); }); }
        else { document.execCommand("copy"); done(); }
      });
    });

    document.querySelectorAll(".ban-form input[name=kind]").forEach(function (radio) {
      radio.addEventListener("change", function () {
        var value = document.getElementById("ban-value");
        if (value && radio.checked) { value.value = radio.getAttribute("data-value"); }
      });
    });

    // A refused account form (the page opened at its card, see the form's #m-<id> action):
    // focus what its message is about, so it can be fixed at once and is read out with it.
    var refused = document.querySelector("[data-refused]");
    if (refused) {
      var marked = refused.querySelector("[aria-invalid=true]:not([disabled]), [aria-describedby$='-error']:not([disabled])");
      if (marked && marked.tagName === "FIELDSET") {
        // The sites' fieldset: its first site (the message is the fieldset's description).
        marked = marked.querySelector("input[name=sites]:not([disabled])") ||
          marked.querySelector("input:not([type=hidden]):not([disabled])");
      }
      if (marked) {
        marked.focus();
        // The browser then goes to the URL's #m-<id> and focuses that card (tabindex=-1; a
        // target that cannot take focus would clear it instead): move focus back to the
        // field, until the moderator clicks or types.
        var target = location.hash && document.getElementById(location.hash.slice(1));
        if (target) {
          var back = function () { marked.focus(); };
          var disarm = function () { target.removeEventListener("focus", back); };
          target.addEventListener("focus", back);
          document.addEventListener("pointerdown", disarm, { once: true, capture: true });
          document.addEventListener("keydown", disarm, { once: true, capture: true });
        }
      }
    }

    // Come back to the card the moderator was on before the page reloaded.
    try {
      var saved = (sessionStorage.getItem(STORE) || "").split("|");
      if (saved[0] === location.pathname + location.search && cards().length) {
        setCurrent(Number(saved[1]) || 0, true);
      }
    } catch (e) { /* private mode */ }
    updateCount();
  });

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) { return; }
    var list = cards();
    if (!list.length) { return; }
    var index = currentIndex();
    var card = index >= 0 ? list[index] : null;
    var key = event.key;
    if (key === "j") { setCurrent(index + 1, true); event.preventDefault(); return; }
    if (key === "k") { setCurrent(index < 0 ? 0 : index - 1, true); event.preventDefault(); return; }
    if (!card) { return; }
    if (key === "x") {
      var box = card.querySelector(".select");
      if (box) { box.checked = !box.checked; updateCount(); }
      event.preventDefault();
      return;
    }
    var actions = { a: "approve", r: "reject", s: "spam" };
    if (actions[key]) {
      var button = card.querySelector("button[data-action=" + actions[key] + "]");
      if (button) { event.preventDefault(); button.click(); }
      return;
    }
    if (key === "Enter" && event.target === card) {
      var link = card.querySelector(".card-head a");
      if (link) { event.preventDefault(); link.click(); }
    }
  });
})();

/* segment-connector console: plain DOM, no framework, no build step; ES modules (one per tab, and
 * shared.js), loaded with <script type="module"> under the page's CSP (script-src 'self').
 *
 * This module: sign-in and sign-out, the tabs, and the wiring of each tab's controls.
 */

import { loadDashboard, renderDashboard, stopPolling, wireDashboard } from "./dashboard.js";
import { wireSegments } from "./segments.js";
import { loadSettings, wireSettings } from "./settings.js";
import { $, adminKey, api, clear, el, errorText, message, onSignOut, setAdminKey, show, state } from "./shared.js";
import { wireUsers } from "./users.js";

// -- sign-in --------------------------------------------------------------------------------

function signOut(text, kind, detail) {
  setAdminKey("");
  stopPolling();
  state.settings = null;
  state.catalogue = null;
  show($("tabs"), false);
  show($("signout"), false);
  ["panel-dashboard", "panel-settings", "panel-segments", "panel-users"].forEach(function (id) {
    show($(id), false);
  });
  show($("signin"), true);
  var box = $("signin-message");
  clear(box);
  if (text) {
    box.appendChild(el("p", { text: text }));
    if (detail && detail !== text) box.appendChild(el("p", { className: "hint", text: "The API says: " + detail }));
  }
  box.classList.remove("ok", "error", "warning", "info");
  if (kind) box.classList.add(kind);
  show(box, Boolean(text));
  $("signin-key").value = "";
  $("signin-key").focus();
}

function signIn(event) {
  event.preventDefault();
  var key = $("signin-key").value.trim();
  if (!key) {
    message($("signin-message"), "Enter the admin key.", "error");
    $("signin-key").focus();
    return;
  }
  setAdminKey(key);
  $("signin-submit").disabled = true;
  api("GET", "/dashboard").then(function (result) {
    $("signin-submit").disabled = false;
    if (result.signedOut) return;
    if (!result.ok) {
      setAdminKey("");
      message($("signin-message"), "Sign-in failed: " + errorText(result), "error");
      return;
    }
    enterConsole(result.data);
  });
}

function enterConsole(dashboard) {
  $("signin-key").value = "";
  show($("signin"), false);
  message($("signin-message"), "");
  show($("tabs"), true);
  show($("signout"), true);
  selectTab("panel-dashboard", false, Boolean(dashboard));
  if (dashboard) renderDashboard(dashboard);
}

// -- tabs -----------------------------------------------------------------------------------

function tabButtons() {
  return Array.prototype.slice.call(document.querySelectorAll("#tabs [role=tab]"));
}

function selectTab(panelId, focus, skipLoad) {
  state.currentTab = panelId;
  tabButtons().forEach(function (button) {
    var selected = button.getAttribute("data-panel") === panelId;
    button.setAttribute("aria-selected", selected ? "true" : "false");
    button.tabIndex = selected ? 0 : -1;
    if (selected && focus) button.focus();
    show($(button.getAttribute("data-panel")), selected);
  });
  if (panelId !== "panel-dashboard") stopPolling();
  if (skipLoad) return;
  if (panelId === "panel-dashboard") loadDashboard();
  if (panelId === "panel-settings" || panelId === "panel-segments") loadSettings();
}

function onTabKey(event) {
  var buttons = tabButtons();
  var index = buttons.indexOf(event.target);
  if (index < 0) return;
  var next = null;
  if (event.key === "ArrowRight") next = buttons[(index + 1) % buttons.length];
  else if (event.key === "ArrowLeft") next = buttons[(index - 1 + buttons.length) % buttons.length];
  else if (event.key === "Home") next = buttons[0];
  else if (event.key === "End") next = buttons[buttons.length - 1];
  if (next) {
    event.preventDefault();
    selectTab(next.getAttribute("data-panel"), true);
  }
}

// -- wiring ---------------------------------------------------------------------------------

function start() {
  onSignOut(signOut);
  $("signin-form").addEventListener("submit", signIn);
  $("signout").addEventListener("click", function () {
    signOut("Signed out.", "info");
  });
  tabButtons().forEach(function (button) {
    button.addEventListener("click", function () {
      selectTab(button.getAttribute("data-panel"), false);
    });
    button.addEventListener("keydown", onTabKey);
  });
  wireDashboard();
  wireSettings();
  wireSegments();
  wireUsers();

  if (adminKey()) {
    api("GET", "/dashboard").then(function (result) {
      if (result.signedOut) return;
      if (!result.ok) {
        signOut("The dashboard could not be read: " + errorText(result), "error");
        return;
      }
      enterConsole(result.data);
    });
  } else {
    signOut("", null);
  }
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();

/* The Settings tab: the settings document's form (saved whole with PUT /settings), its field
 * errors, and the write key. */

import { addChoice, chosenValues, names, onMultiMouseDown, renderChoices, updateNote } from "./choices.js";
import { refreshWarnings } from "./dashboard.js";
import { $, api, asText, clear, clone, el, errorDetails, errorText, message, show, state } from "./shared.js";

export var MULTI_FIELDS = [
  "synchronized_segments",
  "synchronized_properties",
  "send_events",
  "synchronized_account_segments",
  "synchronized_account_properties",
];
export var TOGGLES = ["handle_pages", "handle_screens", "handle_accounts", "ignore_segment_userId", "forward_events"];

/** While the settings load, the forms that edit them are busy (an edit would be overwritten). */
export function settingsBusy(busy) {
  ["settings-form", "segment-form"].forEach(function (id) {
    $(id).setAttribute("aria-busy", busy ? "true" : "false");
  });
  $("settings-save").disabled = busy;
  $("segment-save").disabled = busy;
}

export function loadSettings() {
  message($("settings-message"), "");
  var seq = ++state.settingsSeq;
  settingsBusy(true);
  return Promise.all([api("GET", "/settings"), api("GET", "/catalogue")]).then(function (results) {
    var settings = results[0];
    var catalogue = results[1];
    if (seq !== state.settingsSeq) return; // a newer load is on its way
    settingsBusy(false);
    if (settings.signedOut || catalogue.signedOut) return;
    if (!settings.ok) {
      message($("settings-message"), "The settings could not be read: " + errorText(settings), "error");
      message($("segments-message"), "The settings could not be read: " + errorText(settings), "error");
      return;
    }
    state.catalogue = catalogue.ok ? catalogue.data : { traits: [], account_traits: [], events: [] };
    if (!catalogue.ok) {
      message($("settings-message"), "The catalogue could not be read: " + errorText(catalogue), "warning");
    }
    applySettings(settings.data);
    var errors = settings.data.errors || [];
    if (errors.length) {
      var text = "The stored settings are invalid; fix them and save:";
      showFieldErrors(errors, $("settings-result"), text);
    }
  });
}

// Called after the settings were read or saved: the Segments tab lists them (it registers itself,
// so this module does not import the one that imports it).
var appliedListeners = [];

export function onSettingsApplied(listener) {
  appliedListeners.push(listener);
}

export function applySettings(data) {
  state.settings = clone(data.settings || {});
  if (typeof data.write_key_set === "boolean") state.writeKeySet = data.write_key_set;
  renderWriteKey();
  renderSettingsForm();
  appliedListeners.forEach(function (listener) {
    listener();
  });
}

export function renderWriteKey() {
  var status = $("write-key-status");
  if (state.writeKeySet === null) status.textContent = "–";
  else status.textContent = state.writeKeySet ? "set" : "not set";
  status.className = state.writeKeySet ? "status-done" : "status-failed";
}

export function renderSettingsForm() {
  var settings = state.settings || {};
  clearFieldErrors();
  MULTI_FIELDS.forEach(function (field) {
    renderChoices(field, names(settings[field]));
  });
  TOGGLES.forEach(function (field) {
    $("setting-" + field).checked = settings[field] === true;
  });
  updateForwardWarning();
  updateAccountsNotice();
}

/** While handle_accounts is off (as the form has it), the Accounts card says it is inactive. */
export function updateAccountsNotice() {
  var off = !$("setting-handle_accounts").checked;
  show($("accounts-inactive"), off);
  $("accounts-card").classList.toggle("inactive", off);
}

export function updateForwardWarning() {
  show($("forward-events-warning"), $("setting-forward_events").checked);
}

export function formDocument() {
  var documentValue = clone(state.settings || {});
  MULTI_FIELDS.forEach(function (field) {
    documentValue[field] = chosenValues(field);
  });
  TOGGLES.forEach(function (field) {
    documentValue[field] = $("setting-" + field).checked;
  });
  return documentValue;
}

export function clearFieldErrors() {
  Array.prototype.forEach.call(document.querySelectorAll(".field-error"), function (node) {
    node.textContent = "";
    show(node, false);
  });
  Array.prototype.forEach.call(document.querySelectorAll("[aria-invalid]"), function (node) {
    node.removeAttribute("aria-invalid");
  });
}

/** Each error next to its field's control (matched on the path's first part), all of them in `box`. */
export function showFieldErrors(details, box, heading) {
  clear(box);
  box.classList.remove("ok", "error", "warning", "info");
  box.classList.add("error");
  box.appendChild(el("p", { text: heading }));
  var list = el("ul");
  details.forEach(function (detail) {
    var field = asText(detail.field || "");
    var text = asText(detail.error || detail.message || "");
    list.appendChild(el("li", {}, [el("code", { text: field || "(document)" }), el("span", { text: ": " + text })]));
    var first = field.split(".")[0];
    var slot = first ? $("error-" + first) : null;
    if (slot && /^[A-Za-z_]+$/.test(first)) {
      slot.textContent = (slot.textContent ? slot.textContent + " " : "") + (field === first ? text : field + ": " + text);
      show(slot, true);
      var control = $("setting-" + first);
      if (control) control.setAttribute("aria-invalid", "true");
    }
  });
  box.appendChild(list);
  show(box, true);
}

/** The one save path (the Settings form and the Segments editor): PUT the whole document. */
export function saveSettings(documentValue, box) {
  clearFieldErrors();
  message(box, "Saving…", "info");
  return api("PUT", "/settings", documentValue).then(function (result) {
    if (result.signedOut) return result;
    if (!result.ok) {
      var details = errorDetails(result);
      if (details.length) showFieldErrors(details, box, "Not saved: " + errorText(result));
      else message(box, "Not saved: " + errorText(result), "error");
      return result;
    }
    var data = result.data || {};
    applySettings({ settings: data.settings || documentValue });
    clear(box);
    box.classList.remove("error", "warning", "info");
    box.classList.add("ok");
    var resync = data.resync;
    var said = "Saved.";
    if (data.saved === false || resync === "unchanged") said = "Saved: nothing changed, so no resync.";
    else if (resync === "started") said += " A resync started: it brings Segment up to date with the change.";
    else if (resync) said += " Resync: " + asText(resync) + ".";
    box.appendChild(el("p", { text: said }));
    var warnings = data.warnings || [];
    if (warnings.length) {
      var list = el("ul");
      warnings.forEach(function (warning) {
        var item = el("li", {}, [el("code", { text: warning.code }), el("span", { text: ": " + asText(warning.message) })]);
        item.setAttribute("data-code", asText(warning.code));
        list.appendChild(item);
      });
      box.appendChild(el("p", { text: "Warnings:" }));
      box.appendChild(list);
    }
    show(box, true);
    refreshWarnings();
    return result;
  });
}

export function onSettingsSubmit(event) {
  event.preventDefault();
  if (!state.settings) return;
  var button = $("settings-save");
  button.disabled = true;
  saveSettings(formDocument(), $("settings-result")).then(function () {
    button.disabled = false;
  });
}

export function onWriteKeySubmit(event) {
  event.preventDefault();
  var input = $("setting-write_key");
  var value = input.value.trim();
  var box = $("write-key-result");
  if (!value) {
    message(box, "Enter the write key of the Segment source to send to.", "error");
    input.focus();
    return;
  }
  $("write-key-save").disabled = true;
  api("PUT", "/write-key", { write_key: value }).then(function (result) {
    $("write-key-save").disabled = false;
    if (result.signedOut) return;
    if (!result.ok) {
      message(box, "Not saved: " + errorText(result), "error");
      return;
    }
    input.value = "";
    state.writeKeySet = result.data.write_key_set !== false;
    renderWriteKey();
    message(box, "Write key saved.", "ok");
    refreshWarnings();
  });
}

export function wireSettings() {
  $("settings-form").addEventListener("submit", onSettingsSubmit);
  MULTI_FIELDS.forEach(function (field) {
    $("setting-" + field).addEventListener("mousedown", onMultiMouseDown);
  });
  $("settings-form").addEventListener("change", function (event) {
    var field = event.target.getAttribute("data-field");
    if (MULTI_FIELDS.indexOf(field) >= 0) updateNote(field);
    if (event.target.id === "setting-forward_events") updateForwardWarning();
    if (event.target.id === "setting-handle_accounts") updateAccountsNotice();
  });
  Array.prototype.forEach.call(document.querySelectorAll("[data-add]"), function (button) {
    var field = button.getAttribute("data-add");
    button.addEventListener("click", function () {
      addChoice(field);
    });
    $("add-" + field).addEventListener("keydown", function (event) {
      if (event.key === "Enter") {
        event.preventDefault();
        addChoice(field);
      }
    });
  });
  $("write-key-form").addEventListener("submit", onWriteKeySubmit);
}

/* The Segments tab: the user and account segment lists, the rule editor and its live preview. */

import { onSettingsApplied, saveSettings } from "./settings.js";
import { $, api, asText, clear, clone, el, errorDetails, errorText, message, show, state } from "./shared.js";

export var PREVIEW_DELAY_MS = 400;

export function segmentListField(kind) {
  return kind === "account" ? "account_segments" : "segments";
}

export function renderSegmentLists() {
  ["user", "account"].forEach(function (kind) {
    var list = $("segments-" + kind);
    clear(list);
    var definitions = ((state.settings || {})[segmentListField(kind)] || []).filter(function (item) {
      return item && typeof item === "object";
    });
    definitions.forEach(function (definition) {
      var name = asText(definition.name);
      var edit = el("button", { className: "button secondary small", text: "Edit", attrs: { type: "button" } });
      edit.setAttribute("data-testid", "segment-edit");
      edit.setAttribute("aria-label", "Edit " + name);
      edit.addEventListener("click", function () {
        editSegment(kind, definition);
      });
      var remove = el("button", { className: "button danger small", text: "Delete", attrs: { type: "button" } });
      remove.setAttribute("data-testid", "segment-delete");
      remove.setAttribute("aria-label", "Delete " + name);
      remove.addEventListener("click", function () {
        deleteSegment(kind, name, remove);
      });
      var item = el("li", { className: "segment-item" }, [
        el("div", { className: "segment-head" }, [
          el("strong", { className: "segment-name", text: name }),
          el("span", { className: "segment-buttons" }, [edit, remove]),
        ]),
        el("code", { className: "rule", text: asText(definition.rule) }),
      ]);
      item.setAttribute("data-testid", "segment-item");
      item.setAttribute("data-kind", kind);
      item.setAttribute("data-name", name);
      list.appendChild(item);
    });
    show($("segments-" + kind + "-none"), definitions.length === 0);
  });
  show($("account-segments-inactive"), (state.settings || {}).handle_accounts !== true);
}

export function newSegment(kind) {
  state.editing = null;
  $("segment-kind").value = kind;
  $("segment-kind").disabled = false;
  $("segment-name").value = "";
  $("segment-rule").value = "";
  $("segment-form-title").textContent = kind === "account" ? "New account segment" : "New user segment";
  clear($("segment-preview"));
  message($("segment-result"), "");
  $("segment-name").focus();
}

export function editSegment(kind, definition) {
  state.editing = { kind: kind, name: asText(definition.name) };
  $("segment-kind").value = kind;
  $("segment-kind").disabled = true;
  $("segment-name").value = asText(definition.name);
  $("segment-rule").value = JSON.stringify(definition.rule, null, 2);
  $("segment-form-title").textContent = "Edit " + (kind === "account" ? "account" : "user") + " segment";
  $("segment-form-title").appendChild(document.createTextNode(" “" + asText(definition.name) + "”"));
  message($("segment-result"), "");
  schedulePreview();
  $("segment-rule").focus();
}

export function parseRule() {
  var text = $("segment-rule").value.trim();
  if (!text) return { empty: true };
  try {
    return { rule: JSON.parse(text) };
  } catch (error) {
    return { error: "Invalid JSON: " + error.message };
  }
}

export function schedulePreview() {
  if (state.previewTimer) window.clearTimeout(state.previewTimer);
  state.previewTimer = window.setTimeout(runPreview, PREVIEW_DELAY_MS);
}

export function previewError(lines) {
  var box = $("segment-preview");
  clear(box);
  box.className = "preview error";
  lines.forEach(function (line) {
    box.appendChild(el("p", { text: line }));
  });
}

export function runPreview() {
  state.previewTimer = null;
  var parsed = parseRule();
  var box = $("segment-preview");
  var seq = ++state.previewSeq;
  if (parsed.empty) {
    clear(box);
    box.className = "preview";
    return;
  }
  if (parsed.error) {
    previewError([parsed.error]);
    return;
  }
  var kind = $("segment-kind").value;
  box.className = "preview pending";
  api("POST", "/segments/preview", { kind: kind, rule: parsed.rule }).then(function (result) {
    if (seq !== state.previewSeq || result.signedOut) return; // a newer edit has its own preview
    if (!result.ok) {
      var lines = ["Invalid rule: " + errorText(result)];
      errorDetails(result).forEach(function (detail) {
        lines.push((detail.field ? asText(detail.field) + ": " : "") + asText(detail.error || detail.message));
      });
      previewError(lines);
      return;
    }
    renderPreview(kind, result.data || {});
  });
}

export function renderPreview(kind, data) {
  var box = $("segment-preview");
  clear(box);
  box.className = "preview ok";
  var what = kind === "account" ? "accounts" : "users";
  var summary = el("p", { className: "preview-count" });
  summary.appendChild(el("strong", { text: asText(data.matched) }));
  summary.appendChild(document.createTextNode(" of " + asText(data.sampled) + " sampled " + what + " match"));
  box.appendChild(summary);
  var examples = data.examples || [];
  if (examples.length) {
    var list = el("ul", { className: "examples" });
    examples.forEach(function (example) {
      var label = [example.user_id, example.email].filter(Boolean).map(asText).join(" · ") || asText(example.id);
      var item = el("li", {}, [
        el("span", { className: "example-id", text: label }),
        el("code", { className: "example-traits", text: asText(example.traits || {}) }),
      ]);
      item.setAttribute("data-id", asText(example.id));
      list.appendChild(item);
    });
    box.appendChild(list);
  }
}

export function onSegmentSubmit(event) {
  event.preventDefault();
  if (!state.settings) return;
  var box = $("segment-result");
  var name = $("segment-name").value.trim();
  var kind = $("segment-kind").value;
  var parsed = parseRule();
  if (!name) {
    message(box, "Give the segment a name.", "error");
    $("segment-name").focus();
    return;
  }
  if (parsed.empty || parsed.error) {
    message(box, parsed.error || "Write the rule (JSON).", "error");
    $("segment-rule").focus();
    return;
  }
  var documentValue = clone(state.settings);
  var field = segmentListField(kind);
  var definitions = Array.isArray(documentValue[field]) ? documentValue[field] : [];
  var original = state.editing && state.editing.kind === kind ? state.editing.name : null;
  var clash = definitions.some(function (definition) {
    return definition && definition.name === name && name !== original;
  });
  if (clash) {
    message(box, "A " + kind + " segment named “" + name + "” exists already.", "error");
    return;
  }
  var replaced = false;
  definitions = definitions.map(function (definition) {
    if (original !== null && definition && definition.name === original) {
      replaced = true;
      return { name: name, rule: parsed.rule };
    }
    return definition;
  });
  if (!replaced) definitions.push({ name: name, rule: parsed.rule });
  documentValue[field] = definitions;
  $("segment-save").disabled = true;
  saveSettings(documentValue, box).then(function (result) {
    $("segment-save").disabled = false;
    if (result && result.ok) state.editing = { kind: kind, name: name };
  });
}

export function deleteSegment(kind, name, button) {
  var token = kind + ":" + name;
  if (state.pendingDelete !== token) {
    state.pendingDelete = token;
    button.textContent = "Confirm delete";
    button.setAttribute("aria-label", "Confirm: delete " + name);
    return;
  }
  state.pendingDelete = null;
  var documentValue = clone(state.settings);
  var field = segmentListField(kind);
  documentValue[field] = (documentValue[field] || []).filter(function (definition) {
    return !(definition && definition.name === name);
  });
  if (state.editing && state.editing.kind === kind && state.editing.name === name) state.editing = null;
  saveSettings(documentValue, $("segment-result"));
}

export function wireSegments() {
  onSettingsApplied(renderSegmentLists);
  $("segment-form").addEventListener("submit", onSegmentSubmit);
  $("segment-rule").addEventListener("input", schedulePreview);
  $("segment-kind").addEventListener("change", schedulePreview);
  $("segment-cancel").addEventListener("click", function () {
    newSegment($("segment-kind").value);
  });
  Array.prototype.forEach.call(document.querySelectorAll("[data-kind]"), function (button) {
    if (button.tagName === "BUTTON") {
      button.addEventListener("click", function () {
        newSegment(button.getAttribute("data-kind"));
      });
    }
  });
}

/* The Settings tab's list pickers: one native <select multiple> per list setting, the chosen names
 * as chips under it, names added by hand. */

import { $, clear, el, show, state } from "./shared.js";

export var ALL = "ALL";
// The connector's own events (segment changes it records on a profile): never offered as names to send.
export var CONNECTOR_EVENTS = ["Entered Segment", "Left Segment"];

export function names(list) {
  return (Array.isArray(list) ? list : [])
    .map(function (item) {
      return item && typeof item === "object" ? item.name : item;
    })
    .filter(function (name) {
      return typeof name === "string" && name !== "";
    });
}

export function unique(list) {
  var seen = {};
  return list.filter(function (item) {
    var key = "k" + item;
    if (seen[key]) return false;
    seen[key] = true;
    return true;
  });
}

export function optionsFor(field, selected) {
  var settings = state.settings || {};
  var catalogue = state.catalogue || {};
  var known;
  if (field === "synchronized_segments") known = [ALL].concat(names(settings.segments));
  else if (field === "synchronized_account_segments") known = [ALL].concat(names(settings.account_segments));
  else if (field === "synchronized_properties") known = names(catalogue.traits);
  else if (field === "synchronized_account_properties") known = names(catalogue.account_traits);
  else {
    known = [ALL, "page", "screen"].concat(
      names(catalogue.events).filter(function (name) {
        return CONNECTOR_EVENTS.indexOf(name) < 0;
      })
    );
  }
  return unique(known.concat(selected));
}

export var FIELDS_WITH_ALL = ["synchronized_segments", "send_events", "synchronized_account_segments"];
export var ALL_TITLES = {
  synchronized_segments: "ALL: every user",
  send_events: "ALL: every event",
  synchronized_account_segments: "ALL: every account",
};
export var MIN_ROWS = 4;
export var MAX_ROWS = 10;

/** One native <select multiple> per list setting: an option per name (its value and its text, as
 * text), the saved names selected, saved names the catalogue does not know kept as options;
 * `keep`: names listed already (added ones), kept as options when not selected. */
export function renderChoices(field, selected, keep) {
  var select = $("setting-" + field);
  clear(select);
  var options = unique(optionsFor(field, selected).concat(keep || []));
  options.forEach(function (name) {
    var option = el("option", { text: name });
    option.value = name;
    option.selected = selected.indexOf(name) >= 0;
    if (name === ALL) {
      option.className = "all";
      option.title = ALL_TITLES[field] || "";
    }
    select.appendChild(option);
  });
  select.size = Math.max(MIN_ROWS, Math.min(options.length, MAX_ROWS));
  updateNote(field);
}

export function definedSegments(field) {
  if (field === "synchronized_segments") return names((state.settings || {}).segments);
  if (field === "synchronized_account_segments") return names((state.settings || {}).account_segments);
  return null;
}

/** The line under a list: nothing to choose yet, ALL overriding the rest, segments not defined. */
export function updateNote(field) {
  var note = $("note-" + field);
  var select = $("setting-" + field);
  var chosen = selectedValues(field);
  var defined = definedSegments(field);
  var text = "";
  var kind = "info";
  if (select.options.length === 0) {
    text = "Nothing to choose yet: add a name below.";
  } else if (chosen.indexOf(ALL) >= 0 && chosen.length > 1) {
    text = "ALL is chosen: the others are not needed, only ALL is saved.";
  } else if (defined) {
    var missing = chosen.filter(function (name) {
      return name !== ALL && defined.indexOf(name) < 0;
    });
    if (missing.length) {
      text = "Not defined as a segment (nobody is in it): " + missing.join(", ");
      kind = "warning";
    }
  }
  note.textContent = text;
  note.classList.remove("info", "warning");
  if (text) note.classList.add(kind);
  show(note, Boolean(text));
  renderChips(field);
}

export var NONE_CHOSEN = {
  synchronized_segments: "None chosen: nobody is sent.",
  synchronized_properties: "None chosen: only hull_segments is sent.",
  send_events: "None chosen: no event is sent.",
  synchronized_account_segments: "None chosen: no account is sent.",
  synchronized_account_properties: "None chosen: only hull_segments is sent.",
};

/** The chosen names of a list as chips under it (the select stays the one source of truth): each
 * with a button that takes it out. */
export function renderChips(field) {
  var list = $("chosen-" + field);
  var select = $("setting-" + field);
  clear(list);
  Array.prototype.forEach.call(select.selectedOptions, function (option) {
    var name = option.value;
    var remove = el("button", { className: "chip-remove", text: "×", attrs: { type: "button" } });
    remove.setAttribute("aria-label", "Remove " + name);
    remove.setAttribute("data-testid", "chip-remove");
    remove.addEventListener("click", function () {
      removeChoice(field, name);
    });
    var chip = el("li", { className: name === ALL ? "chip all" : "chip" }, [
      el("span", { className: "chip-name", text: name }),
      remove,
    ]);
    chip.setAttribute("data-value", name);
    chip.setAttribute("data-testid", "chip");
    list.appendChild(chip);
  });
  if (!select.selectedOptions.length) {
    list.appendChild(el("li", { className: "chips-none hint", text: NONE_CHOSEN[field] || "None chosen." }));
  }
}

export function changed(select) {
  select.dispatchEvent(new Event("input", { bubbles: true }));
  select.dispatchEvent(new Event("change", { bubbles: true }));
}

export function removeChoice(field, name) {
  var select = $("setting-" + field);
  var chips = Array.prototype.slice.call($("chosen-" + field).querySelectorAll(".chip"));
  var position = chips.findIndex(function (chip) {
    return chip.getAttribute("data-value") === name;
  });
  Array.prototype.forEach.call(select.options, function (option) {
    if (option.value === name) option.selected = false;
  });
  changed(select);
  // Focus stays among the chips (the next one, else the previous), else goes to the list itself.
  var rest = $("chosen-" + field).querySelectorAll(".chip-remove");
  var next = rest[Math.min(position, rest.length - 1)];
  (next || select).focus();
}

/** A plain click on a name toggles it, keeping the others chosen (a native multi-select would
 * replace the whole choice with it); Shift-click adds the names between the last clicked and this
 * one. Keyboard use stays the browser's own. */
export function onMultiMouseDown(event) {
  var option = event.target;
  var select = event.currentTarget;
  if (!option || option.tagName !== "OPTION" || event.button !== 0 || option.disabled) return;
  event.preventDefault();
  var options = Array.prototype.slice.call(select.options);
  var index = options.indexOf(option);
  var anchor = options.indexOf(select.anchorOption || null);
  if (event.shiftKey && anchor >= 0) {
    options.slice(Math.min(anchor, index), Math.max(anchor, index) + 1).forEach(function (item) {
      item.selected = true;
    });
  } else {
    option.selected = !option.selected;
  }
  select.anchorOption = option;
  select.focus();
  changed(select);
}

export function selectedValues(field) {
  return Array.prototype.map.call($("setting-" + field).selectedOptions, function (option) {
    return option.value;
  });
}

/** What is saved for a list: ["ALL"] alone when ALL is chosen; otherwise the saved order is kept
 * (then the new names, in the list's order), so saving an untouched form changes nothing. */
export function chosenValues(field) {
  var chosen = selectedValues(field);
  if (FIELDS_WITH_ALL.indexOf(field) >= 0 && chosen.indexOf(ALL) >= 0) return [ALL];
  var saved = names((state.settings || {})[field]);
  var rank = function (name) {
    var index = saved.indexOf(name);
    return index < 0 ? saved.length : index;
  };
  return chosen
    .map(function (name, position) {
      return { name: name, position: position };
    })
    .sort(function (a, b) {
      return rank(a.name) - rank(b.name) || a.position - b.position;
    })
    .map(function (item) {
      return item.name;
    });
}

export function addChoice(field) {
  var input = $("add-" + field);
  var name = input.value.trim();
  if (!name) {
    input.focus();
    return;
  }
  var selected = selectedValues(field);
  if (selected.indexOf(name) < 0) selected.push(name);
  if (field === "send_events" && selected.indexOf(ALL) >= 0) {
    selected = selected.filter(function (value) {
      return value !== ALL;
    });
  }
  var listed = Array.prototype.map.call($("setting-" + field).options, function (option) {
    return option.value;
  });
  renderChoices(field, selected, listed);
  input.value = "";
  input.focus();
}

/* segment-connector console: plain DOM, no framework, no build step.
 *
 * Everything that comes from the API is put into the page with textContent (or as an attribute
 * value set with setAttribute / dataset), never parsed as HTML: traits, event names, ids and
 * reasons come from the tracked users. The page's CSP allows no inline script or style.
 */
(function () {
  "use strict";

  var KEY_STORAGE = "segment-connector.admin-key";
  var API = "/console/api";
  var POLL_MS = 3000; // while a resync or replay runs: its status alone (GET /status, no count)
  var PREVIEW_DELAY_MS = 400;
  var ALL = "ALL";
  // The connector's own events (segment changes it records on a profile): never offered as names to send.
  var CONNECTOR_EVENTS = ["Entered Segment", "Left Segment"];
  var SETUP_HINT =
    "No admin key is set up for this stack. Set one with `segment-connector keys set admin-key` " +
    "(locally: start the stack with ADMIN_KEY=... make run), then sign in with it.";

  var state = {
    settings: null, // the last settings document read or saved (the whole document)
    catalogue: null,
    writeKeySet: null,
    dashboardTimer: null,
    dashboardSeq: 0,
    settingsSeq: 0,
    previewTimer: null,
    previewSeq: 0,
    editing: null, // {kind, name} of the segment being edited, null for a new one
    pendingDelete: null,
    currentTab: "panel-dashboard",
  };

  // -- small DOM helpers ------------------------------------------------------------------------

  function $(id) {
    return document.getElementById(id);
  }

  function el(tag, options, children) {
    var node = document.createElement(tag);
    options = options || {};
    if (options.className) node.className = options.className;
    if (options.text !== undefined && options.text !== null) node.textContent = String(options.text);
    if (options.attrs) {
      Object.keys(options.attrs).forEach(function (name) {
        node.setAttribute(name, String(options.attrs[name]));
      });
    }
    (children || []).forEach(function (child) {
      if (child) node.appendChild(child);
    });
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function show(node, visible) {
    node.hidden = !visible;
  }

  function message(node, text, kind) {
    node.textContent = text || "";
    node.classList.remove("ok", "error", "warning", "info");
    if (kind) node.classList.add(kind);
    show(node, Boolean(text));
  }

  /** A value shown as text: strings as they are, anything else as JSON. */
  function asText(value) {
    if (value === undefined) return "";
    if (typeof value === "string") return value;
    try {
      return JSON.stringify(value);
    } catch (error) {
      return String(value);
    }
  }

  var ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/;

  /** A time from the API (ISO-8601, UTC) in the viewer's local time and language, with its ISO value
   * on hover (title) and for machines (datetime); anything that is not such a time is shown as text. */
  function timeNode(value) {
    var text = asText(value);
    var date = ISO_TIME.test(text) ? new Date(text) : null;
    if (!date || isNaN(date.getTime())) return el("span", { text: text });
    var node = el("time", { className: "local-time", text: date.toLocaleString(undefined, { timeZoneName: "short" }) });
    node.setAttribute("datetime", text);
    node.title = text;
    return node;
  }

  function clone(value) {
    return JSON.parse(JSON.stringify(value));
  }

  // -- the API --------------------------------------------------------------------------------

  function adminKey() {
    try {
      return window.sessionStorage.getItem(KEY_STORAGE) || "";
    } catch (error) {
      return "";
    }
  }

  function setAdminKey(value) {
    try {
      if (value) window.sessionStorage.setItem(KEY_STORAGE, value);
      else window.sessionStorage.removeItem(KEY_STORAGE);
    } catch (error) {
      /* storage unavailable: the key lives as long as nothing asks for it again */
    }
  }

  /** Resolves to {ok, status, data}; data is the parsed JSON body (or {} when there is none). */
  function api(method, path, body) {
    var init = {
      method: method,
      headers: { Authorization: "Bearer " + adminKey(), Accept: "application/json" },
      credentials: "omit",
      cache: "no-store",
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return window.fetch(API + path, init).then(
      function (response) {
        return response.text().then(function (text) {
          var data = {};
          if (text) {
            try {
              data = JSON.parse(text);
            } catch (error) {
              data = { error: "unexpected answer (HTTP " + response.status + ")" };
            }
          }
          var result = { ok: response.ok, status: response.status, data: data || {} };
          if (!response.ok && handleAuthFailure(result)) result.signedOut = true;
          return result;
        });
      },
      function (error) {
        return { ok: false, status: 0, data: { error: "the console API cannot be reached (" + error.message + ")" } };
      }
    );
  }

  function errorText(result) {
    var data = result.data || {};
    return data.message || data.error || "HTTP " + result.status;
  }

  function errorDetails(result) {
    var details = (result.data && result.data.details) || [];
    return Array.isArray(details) ? details : [];
  }

  /** 401 / 503 not_configured from any call: back to the sign-in form with the reason. */
  function handleAuthFailure(result) {
    var code = result.data && result.data.code;
    if (result.status === 503 && code === "not_configured") {
      signOut(SETUP_HINT, "warning", errorText(result));
      return true;
    }
    if (result.status === 401) {
      signOut("That admin key is wrong (or was replaced): sign in again with the current key.", "error");
      return true;
    }
    return false;
  }

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

  // -- dashboard ------------------------------------------------------------------------------

  function stopPolling() {
    if (state.dashboardTimer) window.clearTimeout(state.dashboardTimer);
    state.dashboardTimer = null;
  }

  /** Only the newest dashboard read is shown (an older answer arriving late would undo a change). */
  function readDashboard() {
    var seq = ++state.dashboardSeq;
    return api("GET", "/dashboard").then(function (result) {
      result.stale = seq !== state.dashboardSeq;
      return result;
    });
  }

  function loadDashboard() {
    stopPolling();
    return readDashboard().then(function (result) {
      if (result.signedOut || result.stale) return;
      if (!result.ok) {
        message($("dashboard-message"), "The dashboard could not be read: " + errorText(result), "error");
        return;
      }
      message($("dashboard-message"), "");
      renderDashboard(result.data);
    });
  }

  function renderDashboard(data) {
    $("webhook-url").textContent = asText(data.webhook_url || "");
    var header = data.auth_header;
    $("auth-header").textContent = header ? asText(header) : "";
    show($("copy-auth-header"), Boolean(header));
    show($("auth-header-missing"), !header);
    renderWarnings(data.warnings || []);
    var counts = data.counts || {};
    ["users", "accounts", "events", "dead_letters"].forEach(function (name) {
      var value = counts[name];
      $("count-" + name).textContent = typeof value === "number" ? value.toLocaleString("en") : asText(value);
    });
    show($("counts-estimated"), counts.exact === false);
    renderCountsAge(counts);
    renderDeadLetters(data.dead_letters || [], counts.dead_letters);
    renderJobs(data);
  }

  /** The users, accounts and events are counted at most once a minute: how old the shown count is. */
  function renderCountsAge(counts) {
    var node = $("counts-age");
    var age = Number(counts.age_seconds);
    if (!counts.counted_at || isNaN(age)) {
      show(node, false);
      return;
    }
    clear(node);
    node.appendChild(document.createTextNode("Users, accounts and events counted " + age + " s ago ("));
    node.appendChild(timeNode(counts.counted_at));
    node.appendChild(document.createTextNode(")."));
    show(node, true);
  }

  /** The resync and the replay (from the dashboard or GET /status); while one runs, its status
   * alone is polled, and the whole dashboard is read once it ends. */
  function renderJobs(data) {
    renderResync(data.resync || { status: "none" });
    renderReplay(data.replay || { status: "none" });
    if (jobRunning(data) && state.currentTab === "panel-dashboard" && adminKey()) {
      state.dashboardTimer = window.setTimeout(pollStatus, POLL_MS);
    }
  }

  function jobRunning(data) {
    return (data.resync && data.resync.status === "running") || (data.replay && data.replay.status === "running");
  }

  function pollStatus() {
    stopPolling();
    var seq = ++state.dashboardSeq;
    api("GET", "/status").then(function (result) {
      if (result.signedOut || seq !== state.dashboardSeq) return;
      if (!result.ok) {
        message($("dashboard-message"), "The jobs' status could not be read: " + errorText(result), "error");
        if (state.currentTab === "panel-dashboard" && adminKey()) {
          state.dashboardTimer = window.setTimeout(pollStatus, POLL_MS); // try again
        }
        return;
      }
      message($("dashboard-message"), "");
      if (jobRunning(result.data)) renderJobs(result.data);
      else loadDashboard(); // the job ended: its outcome, the counts and the dead letters
    });
  }

  function renderWarnings(warnings) {
    var list = $("warnings");
    clear(list);
    warnings.forEach(function (warning) {
      var item = el("li", { className: "warning-item" }, [
        el("span", { className: "code", text: warning.code }),
        el("span", { text: warning.message }),
      ]);
      item.setAttribute("data-code", asText(warning.code));
      list.appendChild(item);
    });
    show($("warnings-none"), warnings.length === 0);
  }

  var RESYNC_LABELS = {
    id: "Id",
    reason: "Reason",
    started_at: "Started",
    updated_at: "Updated",
    finished_at: "Finished",
    segments: "Scan segments",
    segments_done: "Segments done",
    evaluated: "Evaluated",
    changed: "Changed",
    sent: "Sent",
    failed: "Failed",
    error: "Error",
  };

  function renderResync(job) {
    var status = job.status || "none";
    var statusNode = $("resync-status");
    statusNode.textContent = status === "none" ? "none yet" : asText(status);
    statusNode.className = "status-" + String(status).replace(/[^a-z_]/gi, "");
    var details = $("resync-details");
    clear(details);
    Object.keys(job).forEach(function (name) {
      if (name === "status" || job[name] === null || job[name] === undefined) return;
      var value = /_at$/.test(name) ? timeNode(job[name]) : document.createTextNode(asText(job[name]));
      details.appendChild(el("div", {}, [el("dt", { text: RESYNC_LABELS[name] || name }), el("dd", {}, [value])]));
    });
    var bar = $("resync-progress");
    var total = Number(job.segments);
    if (status === "running" && total > 0) {
      bar.max = total;
      bar.value = Math.min(Number(job.segments_done) || 0, total);
      bar.textContent = bar.value + " / " + total;
      bar.setAttribute("aria-label", "Resync progress: " + bar.value + " of " + total + " scan segments");
      show(bar, true);
    } else {
      show(bar, false);
    }
  }

  function renderDeadLetters(letters, total) {
    var body = $("dead-letters");
    clear(body);
    letters.forEach(function (letter) {
      var row = el("tr", {}, [
        el("td", { className: "nowrap" }, [timeNode(letter.at)]),
        el("td", { text: asText(letter.type) }),
        el("td", { text: asText(letter.user_id) }),
        el("td", { className: "mono", text: asText(letter.message_id) }),
        el("td", { text: asText(letter.reason) }),
      ]);
      row.setAttribute("data-message-id", asText(letter.message_id));
      body.appendChild(row);
    });
    show($("dead-letters-table"), letters.length > 0);
    show($("dead-letters-none"), letters.length === 0);
    $("replay").disabled = letters.length === 0 && !total;
  }

  // The replay job's progress (the dashboard's `replay`, or the answer of POST /replay), as text.
  function renderReplay(job, prefix) {
    var status = job && job.status;
    if (!status || status === "none") return;
    var counts =
      "tried " + (job.tried || 0) + " of " + (job.total || 0) + ", replayed " + (job.replayed || 0) +
      ", failed " + (job.failed || 0);
    var said = {
      running: "Replay running: " + counts + ".",
      done: "Replay done: " + counts + ".",
      stalled: "Replay stalled (its worker stopped): " + counts + ". Replay again to go on.",
      failed: "Replay failed: " + asText(job.reason || "") + "."
    }[status] || "Replay " + asText(status) + ": " + counts + ".";
    var errors = (job.errors || []).map(function (error) {
      return asText(error.message_id) + ": " + asText(error.reason);
    });
    if (errors.length) said += " First errors: " + errors.join("; ");
    var kind = status === "running" ? "info" : status === "done" && !job.failed ? "ok" : "warning";
    message($("replay-result"), (prefix || "") + said, kind);
  }

  function replay() {
    var button = $("replay");
    button.disabled = true;
    message($("replay-result"), "Replaying…", "info");
    api("POST", "/replay", {}).then(function (result) {
      button.disabled = false;
      if (result.signedOut) return;
      if (!result.ok) {
        message($("replay-result"), "Replay failed: " + errorText(result), "error");
        return;
      }
      var data = result.data || {};
      renderReplay(data, data.started === false ? "A replay is running already. " : "Replay started. ");
      loadDashboard();
    });
  }

  function copyFrom(button) {
    var text = $(button.getAttribute("data-copy")).textContent;
    var done = function (ok) {
      $("copy-status").textContent = ok ? "Copied to the clipboard." : "Copy failed: select the text and copy it.";
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () {
          done(true);
        },
        function () {
          done(copyFallback(text));
        }
      );
    } else {
      done(copyFallback(text));
    }
  }

  function copyFallback(text) {
    var area = el("textarea", { className: "offscreen", attrs: { readonly: "", "aria-hidden": "true" } });
    area.value = text;
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try {
      ok = document.execCommand("copy");
    } catch (error) {
      ok = false;
    }
    document.body.removeChild(area);
    return ok;
  }

  // -- settings -------------------------------------------------------------------------------

  var MULTI_FIELDS = [
    "synchronized_segments",
    "synchronized_properties",
    "send_events",
    "synchronized_account_segments",
    "synchronized_account_properties",
  ];
  var TOGGLES = ["handle_pages", "handle_screens", "handle_accounts", "ignore_segment_userId", "forward_events"];

  /** While the settings load, the forms that edit them are busy (an edit would be overwritten). */
  function settingsBusy(busy) {
    ["settings-form", "segment-form"].forEach(function (id) {
      $(id).setAttribute("aria-busy", busy ? "true" : "false");
    });
    $("settings-save").disabled = busy;
    $("segment-save").disabled = busy;
  }

  function loadSettings() {
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

  function applySettings(data) {
    state.settings = clone(data.settings || {});
    if (typeof data.write_key_set === "boolean") state.writeKeySet = data.write_key_set;
    renderWriteKey();
    renderSettingsForm();
    renderSegmentLists();
  }

  function renderWriteKey() {
    var status = $("write-key-status");
    if (state.writeKeySet === null) status.textContent = "–";
    else status.textContent = state.writeKeySet ? "set" : "not set";
    status.className = state.writeKeySet ? "status-done" : "status-failed";
  }

  function names(list) {
    return (Array.isArray(list) ? list : [])
      .map(function (item) {
        return item && typeof item === "object" ? item.name : item;
      })
      .filter(function (name) {
        return typeof name === "string" && name !== "";
      });
  }

  function unique(list) {
    var seen = {};
    return list.filter(function (item) {
      var key = "k" + item;
      if (seen[key]) return false;
      seen[key] = true;
      return true;
    });
  }

  function optionsFor(field, selected) {
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

  function renderSettingsForm() {
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
  function updateAccountsNotice() {
    var off = !$("setting-handle_accounts").checked;
    show($("accounts-inactive"), off);
    $("accounts-card").classList.toggle("inactive", off);
  }

  var FIELDS_WITH_ALL = ["synchronized_segments", "send_events", "synchronized_account_segments"];
  var ALL_TITLES = {
    synchronized_segments: "ALL: every user",
    send_events: "ALL: every event",
    synchronized_account_segments: "ALL: every account",
  };
  var MIN_ROWS = 4;
  var MAX_ROWS = 10;

  /** One native <select multiple> per list setting: an option per name (its value and its text, as
   * text), the saved names selected, saved names the catalogue does not know kept as options;
   * `keep`: names listed already (added ones), kept as options when not selected. */
  function renderChoices(field, selected, keep) {
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

  function definedSegments(field) {
    if (field === "synchronized_segments") return names((state.settings || {}).segments);
    if (field === "synchronized_account_segments") return names((state.settings || {}).account_segments);
    return null;
  }

  /** The line under a list: nothing to choose yet, ALL overriding the rest, segments not defined. */
  function updateNote(field) {
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

  var NONE_CHOSEN = {
    synchronized_segments: "None chosen: nobody is sent.",
    synchronized_properties: "None chosen: only hull_segments is sent.",
    send_events: "None chosen: no event is sent.",
    synchronized_account_segments: "None chosen: no account is sent.",
    synchronized_account_properties: "None chosen: only hull_segments is sent.",
  };

  /** The chosen names of a list as chips under it (the select stays the one source of truth): each
   * with a button that takes it out. */
  function renderChips(field) {
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

  function changed(select) {
    select.dispatchEvent(new Event("input", { bubbles: true }));
    select.dispatchEvent(new Event("change", { bubbles: true }));
  }

  function removeChoice(field, name) {
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
  function onMultiMouseDown(event) {
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

  function selectedValues(field) {
    return Array.prototype.map.call($("setting-" + field).selectedOptions, function (option) {
      return option.value;
    });
  }

  /** What is saved for a list: ["ALL"] alone when ALL is chosen; otherwise the saved order is kept
   * (then the new names, in the list's order), so saving an untouched form changes nothing. */
  function chosenValues(field) {
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

  function addChoice(field) {
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

  function updateForwardWarning() {
    show($("forward-events-warning"), $("setting-forward_events").checked);
  }

  function formDocument() {
    var documentValue = clone(state.settings || {});
    MULTI_FIELDS.forEach(function (field) {
      documentValue[field] = chosenValues(field);
    });
    TOGGLES.forEach(function (field) {
      documentValue[field] = $("setting-" + field).checked;
    });
    return documentValue;
  }

  function clearFieldErrors() {
    Array.prototype.forEach.call(document.querySelectorAll(".field-error"), function (node) {
      node.textContent = "";
      show(node, false);
    });
    Array.prototype.forEach.call(document.querySelectorAll("[aria-invalid]"), function (node) {
      node.removeAttribute("aria-invalid");
    });
  }

  /** Each error next to its field's control (matched on the path's first part), all of them in `box`. */
  function showFieldErrors(details, box, heading) {
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
  function saveSettings(documentValue, box) {
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

  /** The dashboard's warnings (and the rest of it) read again after a change. */
  function refreshWarnings() {
    return readDashboard().then(function (result) {
      if (result.ok && !result.stale) {
        stopPolling();
        renderDashboard(result.data);
      }
    });
  }

  function onSettingsSubmit(event) {
    event.preventDefault();
    if (!state.settings) return;
    var button = $("settings-save");
    button.disabled = true;
    saveSettings(formDocument(), $("settings-result")).then(function () {
      button.disabled = false;
    });
  }

  function onWriteKeySubmit(event) {
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

  // -- segments -------------------------------------------------------------------------------

  function segmentListField(kind) {
    return kind === "account" ? "account_segments" : "segments";
  }

  function renderSegmentLists() {
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

  function newSegment(kind) {
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

  function editSegment(kind, definition) {
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

  function parseRule() {
    var text = $("segment-rule").value.trim();
    if (!text) return { empty: true };
    try {
      return { rule: JSON.parse(text) };
    } catch (error) {
      return { error: "Invalid JSON: " + error.message };
    }
  }

  function schedulePreview() {
    if (state.previewTimer) window.clearTimeout(state.previewTimer);
    state.previewTimer = window.setTimeout(runPreview, PREVIEW_DELAY_MS);
  }

  function previewError(lines) {
    var box = $("segment-preview");
    clear(box);
    box.className = "preview error";
    lines.forEach(function (line) {
      box.appendChild(el("p", { text: line }));
    });
  }

  function runPreview() {
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

  function renderPreview(kind, data) {
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

  function onSegmentSubmit(event) {
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

  function deleteSegment(kind, name, button) {
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

  // -- users ----------------------------------------------------------------------------------

  function onUserSubmit(event) {
    event.preventDefault();
    var query = $("user-query").value.trim();
    var box = $("user-message");
    if (!query) {
      message(box, "Enter a user_id, anonymous_id or email.", "error");
      $("user-query").focus();
      return;
    }
    $("user-search").disabled = true;
    show($("user-result"), false); // nothing of the previous user stays on screen
    message(box, "Looking up…", "info");
    api("GET", "/users?q=" + encodeURIComponent(query)).then(function (result) {
      $("user-search").disabled = false;
      if (result.signedOut) return;
      if (!result.ok) {
        show($("user-result"), false);
        var text = result.status === 404 ? "No user matches “" + query + "”." : "Lookup failed: " + errorText(result);
        message(box, text, result.status === 404 ? "warning" : "error");
        return;
      }
      message(box, "");
      renderUser(result.data || {});
    });
  }

  function definitionList(node, pairs) {
    clear(node);
    pairs.forEach(function (pair) {
      var value = pair[1];
      if (value === undefined || value === null || value === "") value = "–";
      var shown = value instanceof Node ? value : document.createTextNode(asText(value));
      node.appendChild(el("div", {}, [el("dt", { text: pair[0] }), el("dd", {}, [shown])]));
    });
  }

  function traitRows(body, traits) {
    clear(body);
    var keys = Object.keys(traits || {}).sort();
    if (!keys.length) {
      body.appendChild(el("tr", {}, [el("td", { text: "No traits.", attrs: { colspan: 2 } })]));
    }
    keys.forEach(function (key) {
      var row = el("tr", {}, [el("th", { text: key, attrs: { scope: "row" } }), el("td", { text: asText(traits[key]) })]);
      row.setAttribute("data-trait", key);
      body.appendChild(row);
    });
  }

  function tagList(node, values) {
    clear(node);
    var list = Array.isArray(values) ? values : [];
    list.forEach(function (value) {
      node.appendChild(el("li", { className: "tag", text: asText(value) }));
    });
    if (!list.length) node.appendChild(el("li", { className: "hint", text: "In no segment." }));
  }

  /** Whether the user is in the User Filter, and the traits of the identify call it is sent with. */
  function renderSent(sent) {
    if (sent.in_user_filter) {
      message($("user-sent"), "In the User Filter: sent to Segment with these traits (and the events chosen in Settings).", "ok");
    } else {
      message($("user-sent"), "Not in the User Filter: this user and its events are not sent to Segment.", "warning");
    }
    traitRows($("user-sent-traits"), sent.identify_traits || {});
  }

  function renderUser(data) {
    var user = data.user || {};
    definitionList($("user-profile"), [
      ["Id", user.id],
      ["user_id", user.user_id],
      ["anonymous_ids", (user.anonymous_ids || []).join(", ")],
      ["email", user.email],
      ["account_id", user.account_id],
      ["Created", user.created_at ? timeNode(user.created_at) : ""],
      ["Updated", user.updated_at ? timeNode(user.updated_at) : ""],
    ]);
    tagList($("user-segments"), user.segments);
    traitRows($("user-traits"), user.traits);
    renderSent(data.sent || {});

    var account = $("user-account");
    clear(account);
    if (data.account) {
      var accountDetails = el("dl", { className: "details" });
      definitionList(accountDetails, [["Id", data.account.id]]);
      var segments = el("ul", { className: "tags" });
      tagList(segments, data.account.segments);
      var traitBody = el("tbody");
      traitRows(traitBody, data.account.traits);
      account.appendChild(accountDetails);
      account.appendChild(el("h4", { text: "Account segments" }));
      account.appendChild(segments);
      account.appendChild(el("h4", { text: "Account traits" }));
      account.appendChild(
        el("div", { className: "table-wrap" }, [
          el("table", {}, [
            el("thead", {}, [el("tr", {}, [el("th", { text: "Trait" }), el("th", { text: "Value" })])]),
            traitBody,
          ]),
        ])
      );
    } else {
      account.appendChild(el("p", { className: "hint", text: "No account linked." }));
    }

    var events = $("user-events");
    clear(events);
    (data.events || []).forEach(function (item) {
      var row = el("tr", {}, [
        el("td", { className: "nowrap" }, [timeNode(item.timestamp)]),
        el("td", { text: asText(item.type) }),
        el("td", { text: asText(item.event) }),
        el("td", { text: asText(item.source) }),
        el("td", {}, [el("code", { text: asText(item.properties || {}) })]),
      ]);
      row.setAttribute("data-message-id", asText(item.message_id));
      events.appendChild(row);
    });
    if (!(data.events || []).length) {
      events.appendChild(el("tr", {}, [el("td", { text: "No events stored.", attrs: { colspan: 5 } })]));
    }
    show($("user-result"), true);
  }

  // -- wiring ---------------------------------------------------------------------------------

  function start() {
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
    $("dashboard-refresh").addEventListener("click", loadDashboard);
    $("replay").addEventListener("click", replay);
    Array.prototype.forEach.call(document.querySelectorAll("[data-copy]"), function (button) {
      button.addEventListener("click", function () {
        copyFrom(button);
      });
    });
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
    $("user-form").addEventListener("submit", onUserSubmit);

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
})();

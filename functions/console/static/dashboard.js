/* The Dashboard tab: what to paste into Segment, the warnings, the counts, the resync and the
 * dead letters (with their replay). While a resync or replay runs, only GET /status is polled. */

import { $, adminKey, api, asText, clear, el, errorText, message, show, state, timeNode } from "./shared.js";

export var POLL_MS = 3000; // while a resync or replay runs: its status alone (GET /status, no count)

export function stopPolling() {
  if (state.dashboardTimer) window.clearTimeout(state.dashboardTimer);
  state.dashboardTimer = null;
}

/** Only the newest dashboard read is shown (an older answer arriving late would undo a change). */
export function readDashboard() {
  var seq = ++state.dashboardSeq;
  return api("GET", "/dashboard").then(function (result) {
    result.stale = seq !== state.dashboardSeq;
    return result;
  });
}

export function loadDashboard() {
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

export function renderDashboard(data) {
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
  renderDeletions(data.deletions || {});
  renderDeadLetters(data.dead_letters || [], counts.dead_letters);
  renderJobs(data);
}

/** GDPR deletions accepted and still being swept (shown only while there are some). */
export function renderDeletions(deletions) {
  var count = Number(deletions.in_progress) || 0;
  var node = $("deletions-in-progress");
  node.textContent = count
    ? "GDPR deletions in progress: " + count + " (the oldest received " + Number(deletions.oldest_age_seconds) + " s ago)."
    : "";
  show(node, count > 0);
}

/** The users, accounts and events are counted at most once a minute: how old the shown count is. */
export function renderCountsAge(counts) {
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
export function renderJobs(data) {
  renderResync(data.resync || { status: "none" });
  renderReplay(data.replay || { status: "none" });
  if (jobRunning(data) && state.currentTab === "panel-dashboard" && adminKey()) {
    state.dashboardTimer = window.setTimeout(pollStatus, POLL_MS);
  }
}

export function jobRunning(data) {
  return (data.resync && data.resync.status === "running") || (data.replay && data.replay.status === "running");
}

export function pollStatus() {
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

export function renderWarnings(warnings) {
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

export var RESYNC_LABELS = {
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

export function renderResync(job) {
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

export function renderDeadLetters(letters, total) {
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
export function renderReplay(job, prefix) {
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

export function replay() {
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

export function copyFrom(button) {
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

export function copyFallback(text) {
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

/** The dashboard's warnings (and the rest of it) read again after a change. */
export function refreshWarnings() {
  return readDashboard().then(function (result) {
    if (result.ok && !result.stale) {
      stopPolling();
      renderDashboard(result.data);
    }
  });
}

export function wireDashboard() {
  $("dashboard-refresh").addEventListener("click", loadDashboard);
  $("replay").addEventListener("click", replay);
  Array.prototype.forEach.call(document.querySelectorAll("[data-copy]"), function (button) {
    button.addEventListener("click", function () {
      copyFrom(button);
    });
  });
}

/* The console's shared module: the API client (the admin key in sessionStorage, Bearer auth), the
 * page's state and the DOM helpers every tab uses.
 *
 * Everything that comes from the API is put into the page with textContent (or as an attribute
 * value set with setAttribute / dataset), never parsed as HTML: traits, event names, ids and
 * reasons come from the tracked users. The page's CSP allows no inline script or style.
 */

export var KEY_STORAGE = "segment-connector.admin-key";
export var API = "/console/api";

export var SETUP_HINT =
  "No admin key is set up for this stack. Set one with `segment-connector keys set admin-key` " +
  "(locally: start the stack with ADMIN_KEY=... make run), then sign in with it.";

export var state = {
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

export function $(id) {
  return document.getElementById(id);
}

export function el(tag, options, children) {
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

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

export function show(node, visible) {
  node.hidden = !visible;
}

export function message(node, text, kind) {
  node.textContent = text || "";
  node.classList.remove("ok", "error", "warning", "info");
  if (kind) node.classList.add(kind);
  show(node, Boolean(text));
}

/** A value shown as text: strings as they are, anything else as JSON. */
export function asText(value) {
  if (value === undefined) return "";
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value);
  } catch (error) {
    return String(value);
  }
}

export var ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/;

/** A time from the API (ISO-8601, UTC) in the viewer's local time and language, with its ISO value
 * on hover (title) and for machines (datetime); anything that is not such a time is shown as text. */
export function timeNode(value) {
  var text = asText(value);
  var date = ISO_TIME.test(text) ? new Date(text) : null;
  if (!date || isNaN(date.getTime())) return el("span", { text: text });
  var node = el("time", { className: "local-time", text: date.toLocaleString(undefined, { timeZoneName: "short" }) });
  node.setAttribute("datetime", text);
  node.title = text;
  return node;
}

export function clone(value) {
  return JSON.parse(JSON.stringify(value));
}

// -- the API --------------------------------------------------------------------------------

export function adminKey() {
  try {
    return window.sessionStorage.getItem(KEY_STORAGE) || "";
  } catch (error) {
    return "";
  }
}

export function setAdminKey(value) {
  try {
    if (value) window.sessionStorage.setItem(KEY_STORAGE, value);
    else window.sessionStorage.removeItem(KEY_STORAGE);
  } catch (error) {
    /* storage unavailable: the key lives as long as nothing asks for it again */
  }
}

/** Resolves to {ok, status, data}; data is the parsed JSON body (or {} when there is none). */
export function api(method, path, body) {
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

export function errorText(result) {
  var data = result.data || {};
  return data.message || data.error || "HTTP " + result.status;
}

export function errorDetails(result) {
  var details = (result.data && result.data.details) || [];
  return Array.isArray(details) ? details : [];
}

// The sign-in module's signOut (registered by console.js, so this module imports none of the tabs).
var signOutHandler = function () {};

export function onSignOut(handler) {
  signOutHandler = handler;
}

function signOut(text, kind, detail) {
  signOutHandler(text, kind, detail);
}

/** 401 / 503 not_configured from any call: back to the sign-in form with the reason. */
export function handleAuthFailure(result) {
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

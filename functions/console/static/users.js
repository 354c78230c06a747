/* The Users tab: look a user up (GET /users?q=) and show its profile, segments, traits, account,
 * events and what is sent to Segment. */

import { $, api, asText, clear, el, errorText, message, show, timeNode } from "./shared.js";

export function onUserSubmit(event) {
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

export function definitionList(node, pairs) {
  clear(node);
  pairs.forEach(function (pair) {
    var value = pair[1];
    if (value === undefined || value === null || value === "") value = "–";
    var shown = value instanceof Node ? value : document.createTextNode(asText(value));
    node.appendChild(el("div", {}, [el("dt", { text: pair[0] }), el("dd", {}, [shown])]));
  });
}

/** One row per trait; the names in `computed` (computed traits, from the user's events) are marked. */
export function traitRows(body, traits, computed) {
  clear(body);
  var keys = Object.keys(traits || {}).sort();
  var marked = Array.isArray(computed) ? computed : [];
  if (!keys.length) {
    body.appendChild(el("tr", {}, [el("td", { text: "No traits.", attrs: { colspan: 2 } })]));
  }
  keys.forEach(function (key) {
    var name = el("th", { text: key, attrs: { scope: "row" } });
    if (marked.indexOf(key) >= 0) {
      name.appendChild(document.createTextNode(" "));
      name.appendChild(el("span", { className: "tag computed", text: "computed", attrs: { title: "Computed from the user's events" } }));
    }
    var row = el("tr", {}, [name, el("td", { text: asText(traits[key]) })]);
    row.setAttribute("data-trait", key);
    if (marked.indexOf(key) >= 0) row.setAttribute("data-computed", "true");
    body.appendChild(row);
  });
}

export function tagList(node, values) {
  clear(node);
  var list = Array.isArray(values) ? values : [];
  list.forEach(function (value) {
    node.appendChild(el("li", { className: "tag", text: asText(value) }));
  });
  if (!list.length) node.appendChild(el("li", { className: "hint", text: "In no segment." }));
}

/** Whether the user is in the User Filter, and the traits of the identify call it is sent with. */
export function renderSent(sent, computed) {
  if (sent.in_user_filter) {
    message($("user-sent"), "In the User Filter: sent to Segment with these traits (and the events chosen in Settings).", "ok");
  } else {
    message($("user-sent"), "Not in the User Filter: this user and its events are not sent to Segment.", "warning");
  }
  traitRows($("user-sent-traits"), sent.identify_traits || {}, computed);
}

export function renderUser(data) {
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
  var profileApi = data.profile_api || {};
  $("user-profile-api").textContent = profileApi.traits_path
    ? "curl -u \"$PROFILE_TOKEN:\" '" + window.location.origin + profileApi.traits_path + "'"
    : "";
  tagList($("user-segments"), user.segments);
  traitRows($("user-traits"), user.traits, data.computed_traits);
  renderSent(data.sent || {}, data.computed_traits);

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

export function wireUsers() {
  $("user-form").addEventListener("submit", onUserSubmit);
}

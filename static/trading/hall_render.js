// Renders the opening hall's snapshot (docs/hall.md) into the page's sections.
//
// Every render starts from the snapshot alone, so the page after a reload or a reconnect is
// the same page. Values are only ever set as text (never as HTML): bidder names, objections
// and chat come from other users. Inputs a user is typing into survive a re-render (see
// keepInputs), because snapshots arrive whenever anyone in the hall acts.

import { bytes, fill, when, yuan } from "./hall_format.js";

export const STEPS = ["waiting", "sign_in", "bidder_list", "decryption", "custodians", "reading", "record", "closed"];

/** A new element: props set as attributes (true: present, false/null: absent), `text`, `class`. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = String(value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function hasCaret(input) {
  return input.tagName === "TEXTAREA" || ["text", "search", "url", "tel", "password"].includes(input.type);
}

/**
 * Replace `container`'s children with `build()`'s nodes, keeping what the user typed into
 * elements marked data-keep (matched by that key), and the focus and caret.
 */
export function keepInputs(container, build) {
  const kept = new Map();
  for (const input of container.querySelectorAll("[data-keep]")) kept.set(input.dataset.keep, input.value);
  const active = document.activeElement && container.contains(document.activeElement) ? document.activeElement : null;
  const activeKey = active?.dataset?.keep;
  // Only text-like fields have a caret: setSelectionRange throws on a number input.
  const caret = activeKey !== undefined && hasCaret(active) ? [active.selectionStart, active.selectionEnd] : null;
  container.replaceChildren(...build());
  for (const input of container.querySelectorAll("[data-keep]")) {
    if (kept.has(input.dataset.keep)) input.value = kept.get(input.dataset.keep);
    if (activeKey !== undefined && input.dataset.keep === activeKey) {
      input.focus();
      if (caret && hasCaret(input)) input.setSelectionRange(caret[0], caret[1]);
    }
  }
}

function emptyRow(columns, text) {
  return el("tr", { class: "empty-row" }, el("td", { class: "empty", colspan: columns, text }));
}

/** Who is looking: "host" | "bidder" | "custodian" | "observer". */
export function viewerRole(hall) {
  if (hall.me.host) return "host";
  if (hall.me.bidder) return "bidder";
  if (hall.me.custodian_position !== null && hall.me.custodian_position !== undefined) return "custodian";
  return "observer";
}

export const myPendingBids = (hall) => hall.bids.filter((b) => b.mine && b.manifest && b.status === "listed");
export const myShareBids = (hall) => hall.bids.filter((b) => b.share_enc);
export const confirmedByMe = (hall) => Boolean(hall.record && hall.me.organisation_id &&
  hall.record.confirmations.some((c) => c.organisation_id === hall.me.organisation_id));

/** "What you must do now" for this viewer at this step. */
export function todoText(view) {
  const { hall, S } = view;
  const step = hall.step;
  const role = viewerRole(hall);
  const time = when(hall.hall_opens_at, view.zone);
  if (role === "host") return fill(S.todo.host[step] ?? "", { time });
  if ((step === "closed" || step === "failed") && role !== "bidder") return S.todo.bidder[step];
  if (role === "custodian") {
    if (step === "custodians") return myShareBids(hall).length ? S.todo.custodian.custodians : S.todo.custodian.released;
    return S.todo.custodian.other;
  }
  if (role === "observer") return S.todo.observer;
  const todo = S.todo.bidder;
  if (view.can("sign_in")) return todo.sign_in;
  if ((step === "waiting" || step === "sign_in") && hall.me.signed_in) return todo.signed_in;
  if (step === "decryption" && !myPendingBids(hall).length) return todo.decrypted;
  if (step === "record" && confirmedByMe(hall)) return todo.confirmed;
  return fill(todo[step] ?? "", { time });
}

export function renderTrack(track, step) {
  const at = STEPS.indexOf(step === "failed" ? "closed" : step);
  for (const item of track.querySelectorAll("li[data-step]")) {
    const index = STEPS.indexOf(item.dataset.step);
    item.className = index < at || step === "closed" ? "done" : index === at && step !== "failed" ? "current" : "";
  }
}

function bidderCell(name, mine, S) {
  return el("td", {}, name ?? S.bidder, mine ? el("span", { class: "hall-tag", text: S.you }) : null);
}

export function bidderRows(view) {
  const { hall, S } = view;
  if (!hall.bidders.length) {
    const hidden = !hall.me.host && ["locked", "waiting", "sign_in", "bidder_list"].includes(hall.step);
    return [emptyRow(4, hidden ? S.biddersHidden : S.noBidders)];
  }
  const canCheck = view.can("deposits");
  return hall.bidders.map((b) => {
    const deposit = el("td", {}, el("span", { class: `hall-deposit deposit-${b.deposit}`, "data-deposit": b.deposit,
      text: S.deposit[b.deposit] ?? b.deposit }), b.deposit_note ? el("small", { text: ` ${b.deposit_note}` }) : null);
    if (canCheck) {
      deposit.append(el("span", { class: "hall-deposit-form" },
        el("input", { type: "text", maxlength: 500, placeholder: S.depositNote, "aria-label": S.depositNote,
                      "data-keep": `note:${b.organisation_id}`, class: "deposit-note" }),
        el("button", { type: "button", class: "deposit-confirmed", "data-deposit-set": "confirmed", text: S.confirmDeposit }),
        el("button", { type: "button", class: "deposit-missing", "data-deposit-set": "missing", text: S.missingDeposit })));
    }
    return el("tr", { "data-organisation-id": b.organisation_id },
      bidderCell(b.name, b.organisation_id === hall.me.organisation_id, S),
      el("td", {}, el("code", { text: b.credit_code ?? "" })),
      el("td", { class: "signed-in", text: b.signed_in_at ? when(b.signed_in_at, view.zone) : S.no }),
      deposit);
  });
}

export function bidRows(view) {
  const { hall, S } = view;
  if (!hall.bids.length) return [emptyRow(6, S.noBids)];
  const canDecrypt = view.can("decrypt");
  return hall.bids.map((b) => {
    const details = [];
    if (b.attempts) details.push(fill(S.attempts, { n: b.attempts }));
    if (b.last_failure) details.push(fill(S.lastFailure, { text: b.last_failure }));
    if (b.opened_by) details.push(S.openedBy[b.opened_by] ?? b.opened_by);
    if (hall.tender.decryption_rule === "custodians" && b.shares_released) {
      details.push(fill(S.sharesReleased, { n: b.shares_released, k: hall.tender.threshold }));
    }
    if (b.reason) details.push(reasonText(b.reason, S));
    const note = view.notes.get(b.bid_id);
    const action = el("td", { class: "bid-action" });
    if (b.mine && b.manifest && b.status === "listed" && canDecrypt) {
      action.append(el("button", { type: "button", class: "decrypt primary", "data-decrypt": b.bid_id,
        disabled: view.busy.has(b.bid_id), text: b.attempts || note?.kind === "error" ? S.retry : S.decrypt }));
    }
    if (b.share_enc) action.append(el("span", { class: "hall-tag", text: S.todo.custodian.custodians }));
    if (note) action.append(el("p", { class: `bid-note ${note.kind}`, role: note.kind === "error" ? "alert" : "status", text: note.text }));
    return el("tr", { "data-bid-id": b.bid_id, "data-status": b.status, class: b.mine ? "mine" : null },
      el("td", {}, el("code", { text: b.lot })),
      bidderCell(b.bidder, b.mine, S),
      el("td", { class: "bid-status", text: S.bidStatus[b.status] ?? b.status }),
      el("td", { class: "num", text: b.size !== null && b.size !== undefined ? `${bytes(b.size)} ${S.bytes}` : S.none }),
      el("td", { class: "muted", text: details.join(" · ") }),
      action);
  });
}

function moneyCell(value, words, S) {
  if (value === null || value === undefined || value === "") return el("td", { text: S.none });
  return el("td", { class: "money" }, el("span", { class: "num", text: `${yuan(value)} ${S.yuan}` }),
    words ? el("span", { class: "words", text: fill(S.inWords, { words }) }) : null);
}

/**
 * A reason the server gives (exclusions, void bids, failed lots) in this page's language;
 * text it does not know is shown as given.
 */
export function reasonText(reason, S) {
  if (!reason) return "";
  if (S.reasons[reason]) return S.reasons[reason];
  const lot = /^lot failed: (.*)$/.exec(reason);
  if (lot) return fill(S.reasons.lotFailed, { reason: reasonText(lot[1], S) });
  const few = /^(\d+) valid bid\(s\); the tender needs at least (\d+)$/.exec(reason);
  if (few) return fill(S.reasons.tooFew, { valid: few[1], min: few[2] });
  return reason;
}

export function readoutRows(view) {
  const { hall, S, fields } = view;
  const read = hall.bids.filter((b) => b.read_order !== null && b.read_order !== undefined && b.summary)
    .sort((a, b) => a.read_order - b.read_order);
  if (!read.length) return [emptyRow(3 + fields.length, S.noReadout)];
  return read.map((b) => el("tr", { "data-bid-id": b.bid_id, class: b.mine ? "mine" : null },
    el("td", { text: b.read_order }),
    el("td", {}, el("code", { text: b.lot })),
    bidderCell(b.bidder, b.mine, S),
    fields.map((f) => (f.type === "money"
      ? moneyCell(b.summary[f.name], b.amounts_in_words?.[f.name], S)
      : el("td", { text: b.summary[f.name] ?? S.none })))));
}

export function lotRows(view) {
  const { hall, S } = view;
  if (!hall.lots.length) return [emptyRow(3, S.noLots)];
  return hall.lots.map((lot) => el("tr", { "data-lot": lot.code, "data-status": lot.status },
    el("td", {}, el("code", { text: lot.code }), ` ${lot.name ?? ""}`),
    el("td", { text: S.lotStatus[lot.status] ?? lot.status }),
    el("td", { text: reasonText(lot.reason, S) })));
}

export function objectionItems(view) {
  const { hall, S } = view;
  if (!hall.objections.length) return [el("li", { class: "empty", text: S.noObjections })];
  const canAnswer = view.can("answer_objection");
  return hall.objections.map((o) => {
    const item = el("li", { "data-objection-id": o.id, class: o.mine ? "mine" : null },
      el("p", { class: "muted" }, `${fill(S.raisedBy, { who: o.by ?? S.bidder })} · ${when(o.raised_at, view.zone)}`),
      el("p", { class: "objection-text", text: o.text }));
    if (o.answer !== null && o.answer !== undefined) {
      item.append(el("p", { class: "objection-answer" }, el("strong", { text: `${S.answer}: ` }), o.answer,
        el("small", { class: "muted", text: ` · ${when(o.answered_at, view.zone)}` })));
    } else if (canAnswer) {
      item.append(el("div", { class: "answer-form stack" },
        el("textarea", { rows: 2, maxlength: 2000, "aria-label": S.answerLabel, "data-keep": `answer:${o.id}` }),
        el("button", { type: "button", "data-answer": o.id, text: S.sendAnswer })));
    } else {
      item.append(el("p", { class: "muted objection-pending", text: S.unanswered }));
    }
    return item;
  });
}

export function chatItems(view) {
  const { hall, S } = view;
  if (!hall.chat.length) return [el("li", { class: "empty", text: S.noMessages })];
  return hall.chat.map((m) => el("li", { "data-message-id": m.id, class: m.hidden ? "hidden-message" : null },
    el("small", { class: "muted", text: `${m.from_host ? S.host : m.by ?? S.bidder} · ${when(m.sent_at, view.zone)}` }),
    el("p", { class: "chat-text", text: m.hidden ? S.hidden : m.text }),
    view.can("hide_chat") && !m.hidden ? el("button", { type: "button", class: "link", "data-hide": m.id, text: S.hide }) : null));
}

export function recordNodes(view) {
  const { hall, S } = view;
  const record = hall.record;
  if (!record) return [el("p", { class: "empty", text: S.noRecord })];
  // Every bidder in the opening, confirmed or not yet: the host closes when all have (or time is up).
  const confirmedAt = new Map(record.confirmations.map((c) => [c.organisation_id, c]));
  const listed = hall.bidders.filter((b) => b.has_bid !== false);
  const rows = listed.length ? listed.map((b) => ({ organisation_id: b.organisation_id, name: b.name }))
    : record.confirmations;
  const confirmations = rows.length
    ? el("ul", { id: "confirmations", class: "hall-confirmations" }, rows.map((b) => {
      const done = confirmedAt.get(b.organisation_id);
      return el("li", { "data-organisation-id": b.organisation_id, "data-confirmed": done ? "true" : "false" },
        `${b.name ?? S.bidder} · `,
        el("span", { class: done ? "ok" : "muted",
                     text: done ? fill(S.confirmedAt, { time: when(done.confirmed_at, view.zone) }) : S.notConfirmed }));
    }))
    : el("p", { id: "confirmations", class: "empty", text: S.noConfirmations });
  return [
    el("dl", { class: "keyids" },
      el("dt", { text: S.recordSha }), el("dd", {}, el("code", { id: "record-sha256", class: "keyid", text: record.sha256 })),
      el("dt", { text: S.recordGenerated }), el("dd", { text: when(record.generated_at, view.zone) }),
      el("dt", { text: S.recordDeadline }), el("dd", { text: when(record.confirm_deadline ?? hall.confirm_deadline, view.zone) })),
    el("p", { class: "hall-links" },
      el("a", { id: "record-html", href: record.html, text: S.recordHtml }), " · ",
      el("a", { id: "record-json", href: record.json, text: S.recordJson })),
    el("h3", { text: `${S.confirmations} (${record.confirmations.length}/${rows.length})` }),
    confirmations,
  ];
}

export function timelineItems(view) {
  const { hall, S } = view;
  // Chat has its own panel; the timeline is what the opening did.
  const items = hall.timeline.filter((t) => t.kind !== "hall.chat").reverse(); // newest first
  if (!items.length) return [el("li", { class: "empty", text: S.noTimeline })];
  return items.map((t) => {
    const said = S.events[t.kind] ?? t.kind;
    const text = t.step && S.steps[t.step] ? fill(S.events.stepTo, { step: S.steps[t.step] }) : said;
    return el("li", { "data-kind": t.kind },
      el("time", { datetime: t.at, class: "muted", text: when(t.at, view.zone) }), " ", text,
      t.text ? el("span", { class: "muted", text: ` · ${reasonText(t.text, S)}` }) : null);
  });
}

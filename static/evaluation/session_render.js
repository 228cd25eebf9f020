// Renders the evaluation session's snapshot (GET /api/sessions/{id}) into the page's sections.
//
// Pure DOM building: every function takes the view {snap, S, zone, winners, names} and returns nodes,
// so a reload, a reconnect or a late event always shows the same page. Text from other people
// (names, questions, reasons) is only ever set as text. Inputs carry data-keep keys so what a
// user is typing survives the re-render another expert's act causes (hall_render.keepInputs).
// Buttons name their act in data-act, forms in data-form; session.js handles both.

import { el } from "../trading/hall_render.js";
import { fill, when, yuan } from "../trading/hall_format.js";

export const ENDED = ["closed", "failed", "suspended"];
const MAIN_STAFF_ADVANCES = ["sign_in", "declarations", "chair_election"];
const CHAIR_ADVANCES = ["initial_review", "detailed_review", "consolidation", "report"];
const REVIEW_STEPS = ["initial_review", "detailed_review", "consolidation"];

/** Display names by id: committee members, bidders, rooms ("venue · room"). */
export function names(snap) {
  const map = new Map();
  for (const m of snap.committee || []) map.set(m.id, m.name);
  for (const b of snap.bidders || []) map.set(b.id, b.name);
  for (const r of snap.rooms || []) map.set(r.id, `${r.venue} · ${r.name}`);
  return map;
}

const nameOf = (v, id) => v.names.get(id) ?? String(id ?? "").slice(0, 8);
const me = (v) => v.snap.me;
const myMember = (v) => (v.snap.committee || []).find((m) => m.id === me(v).id);
const passedBidders = (snap) => (snap.review || []).filter((r) => r.passed).map((r) => r.bidder);

function emptyRow(columns, text) {
  return el("tr", {}, el("td", { class: "empty", colspan: columns, text }));
}

function button(text, act, data = {}, primary = false) {
  const props = { type: "button", "data-act": act, class: primary ? "primary" : undefined, text };
  for (const [key, value] of Object.entries(data)) props[`data-${key}`] = value;
  return el("button", props);
}

function submit(text) {
  return el("button", { type: "submit", class: "primary", text });
}

// ---------------------------------------------------------------------------- the step card

/** Mark the track's steps done / current. */
export function stepTrack(track, v) {
  const order = [...track.querySelectorAll("li")].map((li) => li.dataset.step);
  const at = order.indexOf(v.snap.step);
  track.querySelectorAll("li").forEach((li, i) => {
    li.textContent = v.S.steps[li.dataset.step] ?? li.dataset.step;
    li.classList.toggle("done", at >= 0 && i < at);
    li.classList.toggle("current", i === at);
  });
}

export function myPartText(v) {
  const { kind, room } = me(v);
  return fill(v.S.myPart, { kind: v.S.kinds[kind] ?? kind, room: room ? nameOf(v, room) : v.S.noRoom });
}

/** The fault rules' outcome as a sentence, or "" when all is well. */
export function faultText(v) {
  const fault = v.snap.fault;
  if (!fault || !v.S.fault[fault.outcome] || !fault.rooms.length) return "";
  return fill(v.S.fault[fault.outcome], { rooms: fault.rooms.map((r) => nameOf(v, r)).join(", ") });
}

// ---------------------------------------------------------------------------- the step panel

function signInPart(v) {
  const { snap, S } = v;
  const out = [];
  if (me(v).kind === "expert" && !me(v).member) {
    const rooms = snap.rooms.filter((r) => !r.left_out);
    out.push(el("form", { class: "stack", "data-form": "sign-in", id: "sign-in-form" },
      el("label", {}, S.signInRoom,
        el("select", { name: "room", required: true, "data-keep": "sign-in-room" },
          rooms.map((r) => el("option", { value: r.id, text: `${r.venue} · ${r.name}` })))),
      el("p", { class: "muted", text: S.signInNote }),
      submit(S.signIn)));
  } else if (me(v).member) {
    out.push(el("p", { id: "signed-in", text: fill(S.signedIn, { room: nameOf(v, me(v).room) }) }));
  }
  if (snap.step === "sign_in") {
    const live = snap.rooms.filter((r) => !r.left_out);
    out.push(el("p", { class: "muted", text: fill(S.roomsReady, { ready: live.filter((r) => r.ready).length, total: live.length }) }));
    const mine = live.filter((r) => !r.ready && (r.staff === me(v).id || me(v).kind === "main_staff"));
    if (mine.length && ["room_staff", "main_staff"].includes(me(v).kind)) {
      out.push(el("div", { class: "hall-actions" },
        mine.map((r) => button(fill(S.confirmRoom, { room: `${r.venue} · ${r.name}` }), "confirm-room", { room: r.id }))));
    }
    if (me(v).kind === "main_staff" && snap.fault?.outcome === "tenderer_decides" && !snap.decision) {
      out.push(el("div", { class: "hall-actions" },
        Object.entries(S.decision).map(([choice, text]) => button(text, "decision", { choice }))));
    }
  }
  return out;
}

function declarationsPart(v) {
  const { snap, S } = v;
  const out = [];
  const mine = myMember(v);
  if (mine && !mine.declared) {
    out.push(el("form", { class: "stack", "data-form": "declare", id: "declare-form" },
      // A select, not radios: keepInputs keeps values, so another expert's act cannot reset the choice.
      el("label", {}, S.conflictLabel, el("select", { name: "conflict", "data-keep": "conflict" },
        el("option", { value: "no", text: S.noConflict }), el("option", { value: "yes", text: S.conflict }))),
      el("label", {}, S.statement, el("textarea", {
        name: "statement", rows: 3, maxlength: 2000, required: true, "data-keep": "statement",
      }, S.defaultStatement)),
      submit(S.declare)));
  } else if (mine) {
    out.push(el("p", { id: "declared", text: S.youDeclared }));
  }
  const members = snap.committee || [];
  out.push(el("p", { class: "muted", text: fill(S.declarations, { done: members.filter((m) => m.declared).length, total: members.length }) }));
  if (me(v).kind === "main_staff") {
    const conflicted = members.filter((m) => m.conflict);
    if (conflicted.length) {
      out.push(el("div", { class: "hall-actions" },
        conflicted.map((m) => button(fill(S.release, { name: m.name }), "release-member", { user: m.id }))));
    }
  }
  return out;
}

function electionPart(v) {
  const { snap, S } = v;
  const { round, votes, my_vote: myVote } = snap.election;
  const winner = v.winners[round];
  const out = [el("p", { id: "election", text: fill(S.votes, { round, votes, total: (snap.committee || []).length }) })];
  if (winner) out.push(el("p", { class: "notice", id: "elected", text: fill(S.elected, { name: nameOf(v, winner) }) }));
  if (me(v).member && myVote) {
    out.push(el("p", { text: fill(S.youVoted, { name: nameOf(v, myVote) }) }));
  } else if (me(v).member && !winner) {
    out.push(el("form", { class: "hall-inline-form", "data-form": "vote", id: "vote-form" },
      el("label", {}, S.candidate, el("select", { name: "candidate", required: true, "data-keep": "candidate" },
        (snap.committee || []).map((m) => el("option", { value: m.id, text: m.name })))),
      submit(S.vote)));
  }
  return out;
}

function verdictCell(v, bidder, criterion, saved) {
  const key = `${bidder}:${criterion}`;
  const failed = saved && !saved.passed;
  return el("td", { class: "session-verdict" },
    el("select", { name: `v:${key}`, "data-verdict": key, "data-keep": `v:${key}`, "aria-label": v.S.criterion },
      el("option", { value: "pass", text: v.S.pass, selected: !failed }),
      el("option", { value: "fail", text: v.S.fail, selected: failed })),
    el("input", { type: "text", name: `r:${key}`, "data-reason": key, "data-keep": `r:${key}`, maxlength: 1000,
                  placeholder: v.S.reason, "aria-label": v.S.reason, required: failed, value: saved?.reason || undefined }));
}

function reviewResult(v) {
  const { snap, S } = v;
  if (!snap.review) return el("p", { class: "muted", text: S.reviewPending });
  return el("ul", { id: "review-result", class: "session-result" }, snap.review.map((r) =>
    el("li", { "data-bidder": r.bidder, "data-passed": String(r.passed) },
      el("strong", { text: nameOf(v, r.bidder) }), " ", r.passed ? S.passed : S.failedReview,
      r.failures.map((f) => el("p", { class: "muted" },
        fill(S.failures, { criterion: criterionName(v, f.criterion), fails: f.fails, passes: f.passes }),
        Object.entries(f.reasons).map(([expert, reason]) => el("span", { class: "session-reason", text: `${nameOf(v, expert)}: ${reason}` })))))));
}

function criterionName(v, id) {
  const scheme = v.snap.scheme || {};
  const found = [...(scheme.initial_review || []), ...(scheme.criteria || [])].find((c) => c.id === id);
  return found ? found.name : id;
}

function initialReviewPart(v) {
  const { snap, S } = v;
  const out = [];
  const criteria = snap.scheme?.initial_review || [];
  if (me(v).member) {
    const saved = new Map(snap.my_verdicts.map((c) => [`${c.bidder}:${c.criterion}`, c]));
    out.push(el("form", { class: "stack", "data-form": "review", id: "review-form" },
      el("table", { class: "list session-grid" },
        el("thead", {}, el("tr", {}, el("th"), criteria.map((c) => el("th", { text: c.name })))),
        el("tbody", {}, snap.bidders.length ? snap.bidders.map((b) => el("tr", { "data-bidder": b.id },
          el("th", { text: b.name }), criteria.map((c) => verdictCell(v, b.id, c.id, saved.get(`${b.id}:${c.id}`)))))
          : emptyRow(criteria.length + 1, S.noBidders))),
      submit(S.saveVerdicts)));
    if (saved.size && saved.size === snap.bidders.length * criteria.length) {
      out.push(el("p", { class: "muted", id: "verdicts-saved", text: S.verdictsSaved }));
    }
  }
  out.push(el("h3", { text: S.reviewResult }), reviewResult(v));
  return out;
}

function scoreStep(snap, criterion) {
  if (criterion.step) return criterion.step;
  const places = Number.isInteger(snap.scheme?.decimals) ? snap.scheme.decimals : 2;
  return places ? `0.${"0".repeat(places - 1)}1` : "1";
}

function detailedReviewPart(v) {
  const { snap, S } = v;
  const criteria = snap.scheme?.criteria || [];
  const passed = passedBidders(snap);
  if (!passed.length) return [el("p", { class: "empty", text: S.noPassed })];
  const out = [];
  if (me(v).member) {
    const saved = new Map(snap.my_scores.map((c) => [`${c.bidder}:${c.criterion}`, c.score]));
    out.push(el("form", { class: "stack", "data-form": "score", id: "score-form" },
      el("table", { class: "list session-grid" },
        el("thead", {}, el("tr", {}, el("th"), criteria.map((c) => el("th", {},
          c.name, el("br"), el("small", { text: fill(S.range, { min: c.min_score, max: c.max_score }) }))))),
        el("tbody", {}, passed.map((bidder) => el("tr", { "data-bidder": bidder },
          el("th", { text: nameOf(v, bidder) }),
          criteria.map((c) => el("td", {}, el("input", {
            type: "number", name: `s:${bidder}:${c.id}`, "data-score": `${bidder}:${c.id}`, "data-keep": `s:${bidder}:${c.id}`,
            min: c.min_score, max: c.max_score, step: scoreStep(snap, c), required: true, inputmode: "decimal",
            value: saved.get(`${bidder}:${c.id}`), "aria-label": `${nameOf(v, bidder)} ${c.name}`,
          }))))))),
      snap.scheme?.price ? el("p", { class: "muted", text: S.price }) : null,
      submit(S.saveScores)));
    if (saved.size && saved.size === passed.length * criteria.length) {
      out.push(el("p", { class: "muted", id: "scores-saved", text: S.scoresSaved }));
    }
  }
  return out;
}

function consolidationTable(v, row, flagged) {
  const { S } = v;
  const experts = Object.keys(row.expert_totals);
  return el("table", { class: "list session-grid", "data-bidder": row.bidder },
    el("caption", { text: nameOf(v, row.bidder) }),
    el("thead", {}, el("tr", {}, el("th", { text: S.criterion }), experts.map((e) => el("th", { text: nameOf(v, e) })),
      el("th", { text: S.committeeScore }))),
    el("tbody", {},
      row.criteria.map((c) => el("tr", {}, el("th", { text: criterionName(v, c.criterion) }),
        experts.map((e) => {
          const flag = flagged.get(`${e}:${row.bidder}:${c.criterion}`);
          return el("td", { class: flag ? "num session-flagged" : "num", "data-flagged": flag ? "true" : undefined,
                            title: flag ? fill(S.flagged, { score: flag.score, median: flag.others_median, limit: flag.limit }) : undefined,
                            text: c.experts[e] });
        }),
        el("td", { class: "num", text: c.committee }))),
      el("tr", {}, el("th", { text: S.total }), experts.map((e) => el("td", { class: "num", text: row.expert_totals[e] })),
        el("td", { class: "num", text: row.committee_total }))));
}

function consolidationPart(v) {
  const { snap, S } = v;
  const summary = snap.consolidation;
  if (!summary) return [el("p", { class: "muted", text: S.reviewPending })];
  const flagged = new Map(summary.flags.map((f) => [`${f.expert}:${f.bidder}:${f.criterion}`, f]));
  const out = summary.bidders.map((row) => consolidationTable(v, row, flagged));
  out.push(el("ul", { id: "flags", class: "session-flags" }, summary.flags.length ? summary.flags.map((f) => {
    const key = `${f.bidder}:${f.criterion}`;
    const mine = f.expert === me(v).id && me(v).member;
    return el("li", { "data-expert": f.expert, "data-bidder": f.bidder, "data-criterion": f.criterion,
                      "data-explained": String(Boolean(f.reason)) },
      el("strong", { text: `${nameOf(v, f.expert)} · ${nameOf(v, f.bidder)} · ${criterionName(v, f.criterion)}` }), " ",
      fill(S.flagged, { score: f.score, median: f.others_median, limit: f.limit }), " · ",
      f.reason ? el("span", { class: "session-reason", text: fill(S.explained, { reason: f.reason }) })
        : el("span", { class: "session-missing", text: S.unexplained }),
      mine && !f.reason && snap.step === "consolidation" ? el("form", {
        class: "stack", "data-form": "explain", "data-bidder": f.bidder, "data-criterion": f.criterion,
      }, el("label", {}, S.explainLabel, el("textarea", { name: "reason", rows: 2, maxlength: 1000, required: true,
                                                          "data-keep": `explain:${key}` })),
      submit(S.explain)) : null);
  }) : el("li", { class: "empty", text: S.noFlags })));
  return out;
}

function reportPart(v) {
  const { snap, S } = v;
  const out = [];
  if (snap.report_sha256) {
    out.push(el("p", {}, S.reportSha, " ", el("code", { id: "report-sha256", class: "keyid", text: snap.report_sha256 })),
      el("p", {}, el("a", { href: `/sessions/${snap.id}/report`, id: "report-link", text: S.reportHtml }), " · ",
        el("a", { href: `/api/sessions/${snap.id}/report.json`, text: S.reportJson })));
  }
  const members = snap.committee || [];
  out.push(el("p", { class: "muted", id: "signature-count",
                     text: fill(S.signatures, { done: snap.signatures.length, total: members.length }) }));
  const mine = myMember(v);
  if (snap.step === "report" && mine && !mine.signed) {
    out.push(el("form", { class: "stack", "data-form": "sign-report", id: "sign-report-form" },
      el("label", {}, S.dissent, el("textarea", { name: "dissent", rows: 2, maxlength: 2000, "data-keep": "dissent" })),
      submit(S.signReport)));
  } else if (mine?.signed) {
    out.push(el("p", { id: "report-signed", text: S.youSigned }));
  }
  return out;
}

const PARTS = {
  sign_in: signInPart, declarations: (v) => [...signInPart(v), ...declarationsPart(v)], chair_election: electionPart,
  initial_review: initialReviewPart, detailed_review: detailedReviewPart, consolidation: consolidationPart,
  report: reportPart, closed: reportPart,
};

function advanceButton(v) {
  const { snap, S } = v;
  const kind = me(v).kind;
  if (snap.step === "scheduled" && kind === "main_staff") return button(S.openSignIn, "open-sign-in", {}, true);
  if ((kind === "main_staff" && MAIN_STAFF_ADVANCES.includes(snap.step)) || (kind === "chair" && CHAIR_ADVANCES.includes(snap.step))) {
    return button(S.advance[snap.step], "advance", {}, true);
  }
  return null;
}

/** The current step's work for this person, then the button that moves the session on (if theirs). */
export function stepPanel(v) {
  const { snap, S } = v;
  const part = PARTS[snap.step];
  const advance = advanceButton(v);
  return [
    el("h2", { text: S.steps[snap.step] ?? snap.step }),
    ...(part ? part(v) : []),
    advance ? el("div", { class: "hall-actions session-advance" }, advance) : null,
  ].filter(Boolean);
}

// ---------------------------------------------------------------------------- the other cards

export function bidderRows(v) {
  const { snap, S } = v;
  if (!snap.bidders.length) return [emptyRow(3, S.noBidders)];
  return snap.bidders.map((b) => el("tr", { "data-bidder": b.id },
    el("td", { text: b.name }),
    el("td", { class: "num", text: b.price ? yuan(b.price) : S.none }),
    el("td", {}, b.documents.length
      ? b.documents.map((name) => el("a", { class: "session-document", target: "_blank", rel: "noopener", text: name,
        href: `/api/sessions/${snap.id}/bids/${b.bid}/documents/${encodeURIComponent(name)}` }))
      : el("span", { class: "muted", text: me(v).member || me(v).kind === "supervisor" ? S.documentsClosed : S.none }))));
}

export function committeeRows(v) {
  const { snap, S } = v;
  const members = snap.committee || [];
  if (!members.length) return [emptyRow(4, S.noCommittee)];
  return members.map((m) => el("tr", { "data-user": m.id, class: m.id === me(v).id ? "mine" : undefined },
    el("td", {}, m.name, m.id === snap.chair ? el("span", { class: "hall-tag", text: S.chair }) : null,
      m.id === me(v).id ? el("span", { class: "hall-tag", text: S.you }) : null),
    el("td", { text: nameOf(v, m.room) }),
    el("td", { "data-declared": String(m.declared), text: m.conflict ? S.conflictDeclared : m.declared ? S.declared : S.notDeclared }),
    el("td", { "data-signed": String(m.signed), text: m.signed ? S.signed : S.notSigned })));
}

export function canDraftClarification(v) {
  return me(v).member && REVIEW_STEPS.includes(v.snap.step);
}

export function clarificationItems(v) {
  const { snap, S, zone } = v;
  if (!snap.clarifications.length) return [el("li", { class: "empty", text: S.noClarifications })];
  const reviewer = me(v).kind === "supervisor" && REVIEW_STEPS.includes(snap.step);
  return snap.clarifications.map((c) => el("li", { "data-clarification": c.id, "data-status": c.status },
    el("strong", { text: c.bidder_name }), " ",
    el("span", { class: "muted", text: fill(S.askedBy, { name: nameOf(v, c.asked_by) }) }),
    el("p", { text: c.question }),
    el("p", { class: "muted", text: fill(S.clarification[c.status] ?? c.status, { deadline: when(c.deadline, zone) }) }),
    c.answer ? el("p", { class: "objection-answer", text: `${S.answer}: ${c.answer}` }) : null,
    reviewer && c.status === "draft" ? el("form", { class: "hall-inline-form", "data-form": "approve", "data-id": c.id },
      el("label", {}, S.hours, el("input", { type: "number", name: "hours", min: 1, max: 72, value: 24, required: true,
                                              "data-keep": `hours:${c.id}` })),
      submit(S.approve), button(S.reject, "reject-clarification", { id: c.id })) : null));
}

export function markItems(v) {
  const { snap, S, zone } = v;
  if (!snap.marks.length) return [el("li", { class: "empty", text: S.noMarks })];
  return [...snap.marks].reverse().map((m) => el("li", { "data-mark": m.id },
    el("time", { datetime: m.at, text: when(m.at, zone) }), " ", el("strong", { text: m.label }), " · ", m.by));
}

/** Supervisors and the main venue play recordings back; others see no list. */
export function seesRecordings(v) {
  return ["supervisor", "main_staff"].includes(me(v).kind);
}

export function segmentItems(v) {
  const { snap, S, zone } = v;
  if (!snap.segments.length) return [el("li", { class: "empty", text: S.noRecordings })];
  return snap.segments.map((s) => {
    const url = `/api/sessions/${snap.id}/recordings/${s.id}`;
    return el("li", { "data-segment": s.id, "data-room": s.room },
      el("p", { text: fill(S.segment, { room: nameOf(v, s.room), start: when(s.started_at, zone), end: when(s.ended_at, zone),
                                        bytes: s.bytes, index: s.log_index ?? S.none }) }),
      el("p", {}, el("code", { class: "keyid", text: s.sha256 })),
      el("video", { controls: true, preload: "none", src: url, class: "session-playback" }),
      el("a", { href: url, download: s.file, text: S.download }));
  });
}

/** One event of the session's socket as a timeline line. */
export function timelineItem(event, v) {
  const { S, zone } = v;
  const payload = event.payload || {};
  const template = S.events[event.kind];
  const values = {
    ...payload, kind: event.kind, step: S.steps[payload.step] ?? payload.step,
    room: payload.room ? nameOf(v, payload.room) : "",
  };
  return el("li", { "data-event-id": event.id, "data-kind": event.kind },
    el("time", { datetime: event.created_at, text: when(event.created_at, zone) }), " ",
    template ? fill(template, values) : event.kind);
}

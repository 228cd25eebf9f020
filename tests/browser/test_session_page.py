"""A remote evaluation session (远程异地评标) held in Chromium: three rooms (the main venue and two
sub-venues), one expert seated in each, and a supervisor, each in a browser context of their own.

Chromium's fake camera and microphone stand in for each room's; ICE stays on loopback. Every
room receives the two others and the supervisor receives all three while sending nothing (read
from the pages' own RTCPeerConnections). One room's page is closed during the declarations and
a new page of the same browser rejoins: the others see the drop and the rejoin, the room's video
comes back, and the rejoined page still signs with the key made at sign-in. The committee signs
in, declares, elects its chair, fails one bidder in the initial review, scores the two others
with one deviating score that is flagged and explained, and signs the report, all by clicking
in the pages (the signatures are WebCrypto's). The main venue's staff acts go through the API.
Once the session closes, every recorded segment decodes with both audio and video.
"""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any

import av
import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tenderhall.settings import Settings
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.browser.test_hall import People
from tests.browser.test_keys_page import browser_login
from tests.factories import login, run_async
from tests.integration.conftest import _truncate
from tests.integration.test_submission import serve
from tests.session_world import SessionWorld, make_world, ok

pytestmark = pytest.mark.browser
CAMERA_ARGS = [*CHROMIUM_ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
               "--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required"]
MEDIA_TIMEOUT = 30_000
# Every RTCPeerConnection and WebSocket a page makes, so the test can read what it sends and
# receives, and cut its socket.
KEEP_CONNECTIONS = """(() => {
  for (const [name, list] of [["RTCPeerConnection", "__connections"], ["WebSocket", "__sockets"]]) {
    const Original = window[name];
    window[list] = [];
    window[name] = class extends Original {
      constructor(...args) { super(...args); window[list].push(this); }
    };
  }
})();"""
CONNECTION_STATS = """async () => {
  const open = window.__connections.filter((pc) => pc.connectionState !== "closed");
  const out = {connections: open.length, outbound: 0, decoding: 0, sending: 0, directions: []};
  for (const pc of open) {
    out.directions.push(...pc.getTransceivers().map((t) => t.currentDirection));
    for (const s of (await pc.getStats()).values()) {
      if (s.type === "outbound-rtp") { out.outbound += 1; if (s.kind === "video" && s.framesEncoded > 0) out.sending += 1; }
      if (s.type === "inbound-rtp" && s.kind === "video" && s.framesDecoded > 0) out.decoding += 1;
    }
  }
  return out;
}"""
RECEIVING = """([room, above]) => {
  const tile = document.querySelector(`#rooms .session-tile[data-room="${room}"]`);
  return Boolean(tile) && tile.dataset.state === "live" && tile.querySelector("video").videoWidth > 0
    && Number(tile.dataset.frames) > above;
}"""
SEGMENTS = """(rooms) => {
  const count = (room) => document.querySelectorAll(`#recordings li[data-segment][data-room="${room}"]`).length;
  return count(rooms[0]) >= 1 && count(rooms[1]) >= 2 && count(rooms[2]) >= 1;
}"""
REASON = "资格证明文件中安全生产许可证已过期"
QUESTION = "请澄清投标报价中暂列金额的构成。"
DEVIATION = "施工组织设计缺少关键工序安排，故评分偏低"


def attend(people: People, name: str, base: str, world: SessionWorld, user: Any) -> Page:
    """Log in, find the session in one's list of sessions and open it."""
    page = people.page(name)
    page.context.add_init_script(KEEP_CONNECTIONS)
    browser_login(page, base, user)
    page.goto(f"{base}/sessions")
    page.click(f"#sessions tr[data-session='{world.session_id}'] td a")
    expect(page.locator("#session-connection")).to_have_attribute("data-state", "live")
    return page


def at_step(page: Page, step: str) -> None:
    expect(page.locator("#session")).to_have_attribute("data-step", step)


def receives(page: Page, room: str, above: int = 0) -> None:
    """The room's tile plays its video, with more than `above` frames decoded."""
    page.wait_for_function(RECEIVING, arg=[room, above], timeout=MEDIA_TIMEOUT)


def frames(page: Page, room: str) -> int:
    return int(page.locator(f"#rooms .session-tile[data-room='{room}']").get_attribute("data-frames") or 0)


def advance(page: Page, step: str) -> None:
    page.click("#step-panel button[data-act=advance]")
    at_step(page, step)


def decoded_frames(data: bytes) -> dict[str, int]:
    counts = {"audio": 0, "video": 0}
    with av.open(io.BytesIO(data)) as container:
        for stream in container.streams:
            stream.thread_type = "AUTO"
        for frame in container.decode(*container.streams):
            counts["audio" if isinstance(frame, av.AudioFrame) else "video"] += 1
    return counts


def test_three_rooms_and_a_supervisor_evaluate_together(database_url: str, settings: Settings, browser: Browser) -> None:
    # Venue names are unique and the draw picks from the whole pool: start from an empty database.
    run_async(_truncate(database_url))
    camera = browser.browser_type.launch(executable_path=CHROMIUM, args=CAMERA_ARGS)
    people = People(camera)
    try:
        with serve(replace(settings, rtc_host_addresses=("127.0.0.1",))) as base, httpx.Client(base_url=base, timeout=30) as api:
            world = make_world(api, database_url, experts=3, rooms=3, bidders=3)  # type: ignore[arg-type]
            rooms, bidders = world.rooms, world.bidders
            ok(world.act(world.agent, "open-sign-in"))

            # Sign-in: each expert picks their room; the page makes the session key.
            pages = [attend(people, f"room{i + 1}", base, world, e.user) for i, e in enumerate(world.experts)]
            for page, room in zip(pages, rooms):
                at_step(page, "sign_in")
                page.select_option("#sign-in-form select[name=room]", room)
                page.click("#sign-in-form button[type=submit]")
                expect(page.locator("#signed-in")).to_be_visible()
            supervisor = attend(people, "supervisor", base, world, world.supervisor)
            for room, staff in zip(rooms, world.staff):
                ok(world.act(staff, "confirm-room", {"room_id": room}))
            ok(world.act(world.agent, "advance"))  # the main venue opens the session

            # Media: every room receives the two others; the supervisor all three, sending nothing.
            for page, own in zip(pages, rooms):
                at_step(page, "declarations")
                for room in rooms:
                    if room != own:
                        receives(page, room)
                expect(page.locator(f".session-tile[data-room='{own}']")).to_have_attribute("data-link", "publish")
            for room in rooms:
                receives(supervisor, room)
            stats = supervisor.evaluate(CONNECTION_STATS)
            assert stats["connections"] == 3 and stats["decoding"] == 3, stats
            assert stats["outbound"] == 0 and set(stats["directions"]) == {"recvonly"}, stats
            for page in pages:
                room_stats = page.evaluate(CONNECTION_STATS)
                assert room_stats["sending"] == 1 and room_stats["decoding"] == 2, room_stats

            # A sub-venue drops (its page closes) and rejoins with a new page of the same browser.
            dropped, room2 = pages[1], rooms[1]
            context = dropped.context
            dropped.close()
            for page in (pages[0], supervisor):
                expect(page.locator("#timeline li[data-kind='session.room_dropped']")).to_have_count(1)
                expect(page.locator(f".session-tile[data-room='{room2}']")).to_have_attribute("data-down", "true")
            stalled = frames(supervisor, room2)
            rejoined = context.new_page()
            rejoined.on("pageerror", lambda exc: people.logs["room2"].append(f"pageerror: {exc}"))
            rejoined.goto(f"{base}/sessions/{world.session_id}")
            pages[1] = rejoined
            for page in (pages[0], supervisor):
                expect(page.locator("#timeline li[data-kind='session.room_rejoined']")).to_have_count(1)
                expect(page.locator(f".session-tile[data-room='{room2}']")).to_have_attribute("data-down", "false")
            order = supervisor.eval_on_selector_all(
                "#timeline li[data-kind^='session.room_']", "items => items.map((li) => [li.dataset.kind, +li.dataset.eventId])")
            assert [kind for kind, _ in sorted(order, key=lambda item: item[1])] == [
                "session.room_ready", "session.room_ready", "session.room_ready", "session.room_dropped",
                "session.room_rejoined"], order
            receives(supervisor, room2, stalled + 10)
            receives(pages[0], room2, frames(pages[0], room2) + 10)
            receives(rejoined, rooms[0])

            # The supervisor's socket is cut: the page reconnects and resumes after its last event.
            supervisor.evaluate("window.__sockets.at(-1).close(4000, 'cut by the test')")
            expect(supervisor.locator("#session-connection")).to_have_attribute("data-state", "retrying")
            expect(supervisor.locator("#session-connection")).to_have_attribute("data-state", "live")

            # Declarations, signed in each page (the rejoined page with the key kept since sign-in).
            for page in pages:
                at_step(page, "declarations")
                page.click("#declare-form button[type=submit]")
                expect(page.locator("#declared")).to_be_visible()
            expect(supervisor.locator("#committee td[data-declared=true]")).to_have_count(3)
            ok(world.act(world.agent, "advance"))

            # The chair election: two votes elect the first expert; the third sees the result.
            chair = world.experts[0]
            for page in pages[1:]:
                at_step(page, "chair_election")
                page.select_option("#vote-form select[name=candidate]", str(chair.user.id))
                page.click("#vote-form button[type=submit]")
            expect(pages[0].locator("#elected")).to_be_visible()
            expect(pages[0].locator("#vote-form")).to_have_count(0)
            ok(world.act(world.agent, "advance"))

            # Initial review: everyone fails the third bidder on qualification, with the reason.
            for page in pages:
                at_step(page, "initial_review")
                page.select_option(f"select[name='v:{bidders[2]}:qualification']", "fail")
                page.fill(f"input[name='r:{bidders[2]}:qualification']", REASON)
                page.click("#review-form button[type=submit]")
                expect(page.locator("#verdicts-saved")).to_be_visible()
            # A clarification drafted by an expert, approved by the supervisor in the page.
            pages[1].select_option("#clarify-form select[name=bidder]", bidders[0])
            pages[1].fill("#clarify-form textarea[name=question]", QUESTION)
            pages[1].click("#clarify-form button[type=submit]")
            supervisor.click("#clarifications form[data-form=approve] button[type=submit]")
            expect(pages[1].locator("#clarifications li[data-status=approved]")).to_have_count(1)
            expect(pages[0].locator("#review-result li[data-passed=true]")).to_have_count(2)
            expect(pages[0].locator("#review-result")).to_contain_text(REASON)
            advance(pages[0], "detailed_review")

            # Detailed review: the third expert scores one criterion far below the others.
            for i, page in enumerate(pages):
                at_step(page, "detailed_review")
                for b in bidders[:2]:
                    low = i == 2 and b == bidders[0]
                    page.fill(f"input[name='s:{b}:technical_plan']", "18" if low else "26")
                    page.fill(f"input[name='s:{b}:schedule']", "8")
                    page.fill(f"input[name='s:{b}:credentials']", "8.5")
                page.click("#score-form button[type=submit]")
                expect(page.locator("#scores-saved")).to_be_visible()
            advance(pages[0], "consolidation")

            # Consolidation: exactly that score is flagged; the chair cannot go on until it is explained.
            for page in pages:
                at_step(page, "consolidation")
                expect(page.locator("#step-panel td.session-flagged")).to_have_count(1)
            flag = pages[2].locator(f"#flags li[data-bidder='{bidders[0]}'][data-criterion=technical_plan]")
            expect(flag).to_have_attribute("data-expert", str(world.experts[2].user.id))
            pages[0].click("#step-panel button[data-act=advance]")
            expect(pages[0].locator("#action-error")).to_contain_text("unexplained_deviations")
            pages[2].fill("#mark-form input[name=label]", "偏离已标记")
            pages[2].click("#mark-form button[type=submit]")
            flag.locator("textarea[name=reason]").fill(DEVIATION)
            flag.locator("button[type=submit]").click()
            expect(pages[0].locator("#flags li[data-explained=true]")).to_contain_text(DEVIATION)
            expect(supervisor.locator("#marks")).to_contain_text("偏离已标记")
            advance(pages[0], "report")

            # The report: each expert signs its digest in the browser; one records a dissent.
            sha256 = pages[0].locator("#report-sha256").inner_text()
            for i, page in enumerate(pages):
                at_step(page, "report")
                expect(page.locator("#report-sha256")).to_have_text(sha256)
                if i == 1:
                    page.fill("#sign-report-form textarea[name=dissent]", "对第二名的技术评分有保留意见")
                page.click("#sign-report-form button[type=submit]")
                expect(page.locator("#report-signed")).to_be_visible()
            advance(pages[0], "closed")
            at_step(supervisor, "closed")
            pages[0].click("#report-link")
            expect(pages[0].locator("#report-sha256")).to_have_text(sha256)
            expect(pages[0].locator("#report-signatures tbody tr[data-user]")).to_have_count(3)
            expect(pages[0].locator("#report-deviations")).to_contain_text(DEVIATION)
            expect(pages[0].locator("#report-clarifications")).to_contain_text(QUESTION)

            # The recordings: the session's end closed every segment (the rejoined room has two);
            # the supervisor's page lists them as they are logged, and each decodes, audio and video.
            supervisor.wait_for_function(SEGMENTS, arg=rooms, timeout=MEDIA_TIMEOUT)
            login(api, world.supervisor)  # type: ignore[arg-type]
            segments = ok(api.get(f"{world.url}/recordings"))["segments"]
            expect(supervisor.locator("#recordings li[data-segment]")).to_have_count(len(segments))
            for segment in segments:
                response = api.get(f"{world.url}/recordings/{segment['id']}")
                assert response.status_code == 200, response.text
                counts = decoded_frames(response.content)
                assert counts["audio"] > 0 and counts["video"] > 0, (segment, counts)
            events = supervisor.eval_on_selector_all("#timeline li[data-event-id]", "items => items.map((li) => li.dataset.eventId)")
            assert len(events) == len(set(events)), events  # nothing twice after the reconnect
            assert people.page_errors() == []
    finally:
        for name, lines in people.logs.items():
            print(f"--- console of {name}:", *lines[-40:], sep="\n")
        people.close()
        camera.close()


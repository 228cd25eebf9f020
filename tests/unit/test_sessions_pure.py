"""The pure pieces of the evaluation sessions: names of media rooms, venues' input, signed texts."""

from __future__ import annotations

import uuid

import pytest

from evaluation.session_rules import SessionRefused
from evaluation.session_service import media_room, parse_media_room
from evaluation.session_state import declaration_message, report_signature_message
from evaluation.session_view import files_of
from evaluation.venue_service import parse_venue
from tenderhall.media_hub import ROOM_NAME
from tenderhall.media_log import topic_for_room

SESSION = uuid.UUID("6f1c3a2e-0000-4000-8000-000000000001")
ROOM = uuid.UUID("6f1c3a2e-0000-4000-8000-000000000002")


def test_a_session_room_has_a_hub_name_that_maps_back_and_to_the_session_topic() -> None:
    name = media_room(SESSION, ROOM)
    assert ROOM_NAME.fullmatch(name)
    assert parse_media_room(name) == (SESSION, ROOM)
    assert topic_for_room(name) == f"session:{SESSION}"
    assert parse_media_room(f"hall:{SESSION}") is None and parse_media_room("session-x:y") is None


def test_signed_texts_are_fixed_so_browsers_sign_the_same_bytes() -> None:
    assert report_signature_message(SESSION, "ab" * 32) == (
        f"tenderhall evaluation report\nsession {SESSION}\nsha256 {'ab' * 32}\n").encode()
    # SHA-256 of "无利害关系" in UTF-8.
    assert declaration_message(SESSION, False, "无利害关系") == (
        f"tenderhall conflict declaration\nsession {SESSION}\nconflict no\n"
        "statement-sha256 b9eb11af9a4015711e4dc794e793d5b9ca730d1663052702a92f9a12753dcd9f\n").encode()
    text = declaration_message(SESSION, True, "本人申请回避").decode()
    assert "\nconflict yes\n" in text and text.endswith("\n")


@pytest.mark.parametrize("data, message", [
    ({"region_code": "350100"}, "name"),
    ({"name": "福州", "region_code": "3501"}, "region_code"),
    ({"name": "福州", "region_code": "350100", "rooms": [{"name": "A", "seats": 0}]}, "seats"),
    ({"name": "福州", "region_code": "350100", "rooms": [{"name": "A", "seats": True}]}, "seats"),
    ({"name": "福州", "region_code": "350100", "rooms": [{"name": "A", "seats": 5}, {"name": "A", "seats": 3}]},
     "same name"),
    ([], "JSON object"),
])
def test_a_venue_is_refused_with_the_field_named(data: object, message: str) -> None:
    with pytest.raises(SessionRefused) as refused:
        parse_venue(data)
    assert refused.value.status == 422 and message in refused.value.message


def test_a_venue_with_rooms_parses() -> None:
    assert parse_venue({"name": " 福州市公共资源交易中心 ", "region_code": "350100",
                        "rooms": [{"name": "评标室1", "seats": 7}]}) == ("福州市公共资源交易中心", "350100", "", [("评标室1", 7)])


def test_opened_files_read_both_the_list_and_the_older_single_object() -> None:
    entry = {"name": "技术标.pdf", "size": 3, "sha256": "00"}
    assert files_of([entry]) == [entry] and files_of(entry) == [entry] and files_of(None) == []

"""Store a notice as a JSON document and read it back unchanged.

The outbox keeps each message as the `Notice` the policy decided, so that a
restarted process sends exactly that message. `notice_to_json` writes plain
JSON types only: times as ISO 8601 strings with their UTC offset and
microseconds, event kinds by value and severities by label (`critical`).
`notice_from_json(notice_to_json(n)) == n` holds for every notice.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar

from certwatch.alerts.message import EventKind, Notice, NoticeItem, Place
from certwatch.errors import CertwatchError
from certwatch.x509.model import Severity

NOTICE_FORMAT_VERSION = 1
"""The `format` field of stored notices; it changes when a field changes meaning."""

ValueT = TypeVar("ValueT")


class NoticeFormatError(CertwatchError, ValueError):
    """A stored notice document that cannot be read back into a `Notice`."""


def notice_to_json(notice: Notice) -> dict[str, Any]:
    """Convert `notice` to a document of JSON types that `notice_from_json` reads."""
    return {
        "format": NOTICE_FORMAT_VERSION,
        "key": notice.key,
        "team": notice.team,
        "event": notice.event.value,
        "generated_at": notice.generated_at.isoformat(),
        "items": [_item_to_json(item) for item in notice.items],
    }


def notice_from_json(data: object) -> Notice:
    """Rebuild the notice that `notice_to_json` wrote.

    Raises:
        NoticeFormatError: the document is not an object, a field is missing
            or has the wrong type, an enum value or time is invalid, or the
            notice itself is invalid. The message names the field.
    """
    document = _mapping(data, "notice")
    version = _field(document, "format", "notice", int)
    if version != NOTICE_FORMAT_VERSION:
        raise NoticeFormatError(
            f"Invalid stored notice: format {version!r} is unknown to this "
            f"version of certwatch, which reads format {NOTICE_FORMAT_VERSION}."
        )
    items = [
        _item_from_json(entry, f"items[{index}]")
        for index, entry in enumerate(_field(document, "items", "notice", list))
    ]
    try:
        return Notice(
            key=_field(document, "key", "notice", str),
            team=_field(document, "team", "notice", str),
            event=_event(_field(document, "event", "notice", str), "notice.event"),
            generated_at=_time(document, "generated_at", "notice"),
            items=tuple(items),
        )
    except ValueError as exc:
        if isinstance(exc, NoticeFormatError):
            raise
        raise NoticeFormatError(f"Invalid stored notice: {exc}") from exc


def _item_to_json(item: NoticeItem) -> dict[str, Any]:
    return {
        "event": item.event.value,
        "severity": item.severity.label,
        "message": item.message,
        "names": list(item.names),
        "fingerprint": item.fingerprint,
        "not_after": _optional_time(item.not_after),
        "days_left": item.days_left,
        "places": [_place_to_json(place) for place in item.places],
        "finding_code": item.finding_code,
        "new_fingerprint": item.new_fingerprint,
        "new_not_after": _optional_time(item.new_not_after),
        "stale_places": [_place_to_json(place) for place in item.stale_places],
        "alert_id": item.alert_id,
    }


def _place_to_json(place: Place) -> dict[str, str | None]:
    return {"target": place.target, "address": place.address, "path": place.path}


def _optional_time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _item_from_json(data: object, where: str) -> NoticeItem:
    item = _mapping(data, where)
    severity_label = _field(item, "severity", where, str)
    severities = {severity.label: severity for severity in Severity}
    if severity_label not in severities:
        raise NoticeFormatError(
            f"Invalid stored notice: {where}.severity is {severity_label!r}; "
            f"expected one of {', '.join(severities)}."
        )
    try:
        return NoticeItem(
            event=_event(_field(item, "event", where, str), f"{where}.event"),
            severity=severities[severity_label],
            message=_field(item, "message", where, str),
            names=tuple(_strings(item, "names", where)),
            fingerprint=_optional(item, "fingerprint", where, str),
            not_after=_optional_time_field(item, "not_after", where),
            days_left=_optional(item, "days_left", where, int),
            places=_places(item, "places", where),
            finding_code=_optional(item, "finding_code", where, str),
            new_fingerprint=_optional(item, "new_fingerprint", where, str),
            new_not_after=_optional_time_field(item, "new_not_after", where),
            stale_places=_places(item, "stale_places", where),
            alert_id=_alert_id(item, where),
        )
    except ValueError as exc:
        if isinstance(exc, NoticeFormatError):
            raise
        raise NoticeFormatError(f"Invalid stored notice: {where}: {exc}") from exc


def _alert_id(item: Mapping[str, Any], where: str) -> int | None:
    # Notices stored before items carried their alert have no such field.
    if item.get("alert_id") is None:
        return None
    return _field(item, "alert_id", where, int)


def _places(item: Mapping[str, Any], name: str, where: str) -> tuple[Place, ...]:
    places = []
    for index, entry in enumerate(_field(item, name, where, list)):
        place_where = f"{where}.{name}[{index}]"
        place = _mapping(entry, place_where)
        try:
            places.append(
                Place(
                    target=_optional(place, "target", place_where, str),
                    address=_optional(place, "address", place_where, str),
                    path=_optional(place, "path", place_where, str),
                )
            )
        except ValueError as exc:
            if isinstance(exc, NoticeFormatError):
                raise
            raise NoticeFormatError(
                f"Invalid stored notice: {place_where}: {exc}"
            ) from exc
    return tuple(places)


def _strings(item: Mapping[str, Any], name: str, where: str) -> list[str]:
    values = _field(item, name, where, list)
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise NoticeFormatError(
                f"Invalid stored notice: {where}.{name}[{index}] is {value!r}; "
                "expected a string."
            )
    return values


def _mapping(data: object, where: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise NoticeFormatError(
            f"Invalid stored notice: {where} is {type(data).__name__}; expected "
            "a JSON object."
        )
    return data


def _field(
    document: Mapping[str, Any], name: str, where: str, kind: type[ValueT]
) -> ValueT:
    if name not in document:
        raise NoticeFormatError(f"Invalid stored notice: {where}.{name} is missing.")
    value = document[name]
    # bool is a subclass of int, but true is never a valid count or version.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise NoticeFormatError(
            f"Invalid stored notice: {where}.{name} is {value!r}; expected "
            f"{_KIND_NAMES.get(kind, kind.__name__)}."
        )
    return value


def _optional(
    document: Mapping[str, Any], name: str, where: str, kind: type[ValueT]
) -> ValueT | None:
    if document.get(name) is None:
        if name not in document:
            raise NoticeFormatError(
                f"Invalid stored notice: {where}.{name} is missing."
            )
        return None
    return _field(document, name, where, kind)


def _time(document: Mapping[str, Any], name: str, where: str) -> datetime:
    text = _field(document, name, where, str)
    return _parse_time(text, f"{where}.{name}")


def _optional_time_field(
    document: Mapping[str, Any], name: str, where: str
) -> datetime | None:
    text = _optional(document, name, where, str)
    return None if text is None else _parse_time(text, f"{where}.{name}")


def _parse_time(text: str, where: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise NoticeFormatError(
            f"Invalid stored notice: {where} is {text!r}; expected an ISO 8601 "
            "time such as 2027-01-10T12:00:00+00:00."
        ) from exc
    if moment.tzinfo is None:
        raise NoticeFormatError(
            f"Invalid stored notice: {where} is {text!r}, which has no UTC "
            "offset; expected a time such as 2027-01-10T12:00:00+00:00."
        )
    return moment


def _event(value: str, where: str) -> EventKind:
    try:
        return EventKind(value)
    except ValueError:
        events = ", ".join(event.value for event in EventKind)
        raise NoticeFormatError(
            f"Invalid stored notice: {where} is {value!r}; expected one of {events}."
        ) from None


_KIND_NAMES: dict[type[Any], str] = {
    str: "a string",
    int: "an integer",
    list: "a list",
}

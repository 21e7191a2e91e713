"""Request and response bodies of the HTTP API (they define /openapi.json).

Field names are camelCase on the wire, as in the WebSocket protocol
(``userId``, ``expiresIn``). Until 0.3 a request may still spell a field in
snake_case (``refresh_token``): the names of 0.1, kept as aliases for one
release (docs/errors.md, "Field names").
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import SkipJsonSchema

from pigeon.domain.countries import COUNTRY_CODES
from pigeon.domain.models import (
    ABOUT_MAX_LENGTH,
    DEVICE_NAME_MAX_LENGTH,
    LOCATION_MAX_LENGTH,
    NAME_MAX_LENGTH,
    Platform,
)
from pigeon.domain.people import Audience, GroupAdders, StatusAudience

DIGITS_6 = r"^[0-9]{6}$"


def _no_nul(value: str) -> str:
    # PostgreSQL cannot store U+0000 in text (SQLite can): refuse it on both.
    if "\x00" in value:
        raise ValueError("must not contain the NUL character (U+0000)")
    # A lone surrogate (JSON "\\ud800") has no UTF-8 form: no database stores it.
    if not value.isascii() and any("\ud800" <= c <= "\udfff" for c in value):
        raise ValueError("must not contain unpaired surrogates (U+D800 to U+DFFF)")
    return value


def _known_country(value: str) -> str:
    if value not in COUNTRY_CODES:
        raise ValueError("not an ISO 3166-1 alpha-2 country code")
    return value


# Text fields check their length first, so a refusal speaks of characters; then
# ``_no_nul``. The pattern only documents the NUL rule in /openapi.json.
_NO_NUL = AfterValidator(_no_nul)
_NO_NUL_DOC = Field(json_schema_extra={"pattern": "^[^\x00]*$"})
DeviceName = Annotated[
    str, StringConstraints(min_length=1, max_length=DEVICE_NAME_MAX_LENGTH), _NO_NUL, _NO_NUL_DOC
]
Name = Annotated[str, StringConstraints(max_length=NAME_MAX_LENGTH), _NO_NUL, _NO_NUL_DOC]
About = Annotated[str, StringConstraints(max_length=ABOUT_MAX_LENGTH), _NO_NUL, _NO_NUL_DOC]
Location = Annotated[str, StringConstraints(max_length=LOCATION_MAX_LENGTH), _NO_NUL, _NO_NUL_DOC]
# The schema lists the codes: a pattern alone would document "ZZ" as acceptable.
Country = Annotated[
    str,
    AfterValidator(_known_country),
    WithJsonSchema({"type": "string", "enum": sorted(COUNTRY_CODES)}),
]


class Body(BaseModel):
    """camelCase on the wire; the snake_case field names are accepted too, until 0.3."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


class Strict(Body):
    """Unknown fields are refused, so nobody sets what they may not (mass assignment)."""

    model_config = ConfigDict(extra="forbid")


class CodeRequest(Strict):
    phone: str = Field(
        min_length=1,
        max_length=32,
        description="International number with the leading +, e.g. +14155550123; "
        "spaces and dashes are allowed. Numbers that are not valid get 400 invalid_phone.",
        examples=["+14155550123"],
    )
    locale: str | None = Field(
        None, max_length=16, pattern=r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*$"
    )


class CodeSent(Body):
    phone: str
    expires_in: int = Field(description="Seconds the code stays valid.")
    outbox: str | None = Field(
        None,
        description="With the console SMS provider, the server file the code was written to "
        "(so a login page can say where to look); null with a real SMS provider.",
    )


class DeviceRegistration(Strict):
    name: DeviceName
    platform: Platform = Platform.OTHER


class VerifyRequest(Strict):
    phone: str = Field(min_length=1, max_length=32, examples=["+14155550123"])
    code: str = Field(pattern=DIGITS_6)
    device: DeviceRegistration
    pin: str | None = Field(None, pattern=DIGITS_6, description="Needed when a PIN is set.")


class RefreshRequest(Strict):
    refresh_token: str = Field(min_length=1, max_length=128)


class SessionOut(Body):
    user_id: str
    device_id: str
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"  # noqa: S105 (the scheme name, not a secret)
    expires_in: int
    new_user: bool


class PinRequest(Strict):
    pin: str = Field(pattern=DIGITS_6)


class PinResetRequest(Strict):
    phone: str = Field(min_length=1, max_length=32, examples=["+14155550123"])
    locale: str | None = Field(
        None, max_length=16, pattern=r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*$"
    )


class DeviceOut(Body):
    id: str
    name: str
    platform: Platform
    created_at: datetime
    last_seen_at: datetime
    current: bool


class DeviceList(Body):
    devices: list[DeviceOut]


class Me(Body):
    id: str
    phone: str
    name: str
    about: str
    country: str | None
    location: str | None
    has_pin: bool
    created_at: datetime


class ProfileUpdate(Strict):
    """Only these fields can be changed; anything else is refused with ``unknown_field``."""

    name: Name | None = Field(None, description="null clears it")
    about: About | None = Field(None, description="null clears it")
    country: Country | None = Field(None, description="ISO 3166-1 alpha-2; null clears it")
    location: Location | None = Field(None, description="null clears it")


class PublicProfileOut(Body):
    id: str
    name: str
    about: str
    photo: PhotoOut | None = Field(
        None, description="The profile photo, where the user's privacy settings show it to you."
    )


class Health(Body):
    status: str = Field(description="ok, or degraded when the database does not answer (503).")
    database: str = Field(description="ok or unreachable.")
    bus: str = Field(
        description="memory (one process), ok, or unreachable: then the node still works, "
        "its connections reading their queues until the bus is back."
    )
    node: str = Field(description="This node's id, as the bus and its logs know it.")


# -- people (contacts, blocks, privacy) -----------------------------------------------


class ContactLookup(Strict):
    phones: list[Annotated[str, StringConstraints(max_length=64), _NO_NUL, _NO_NUL_DOC]] = Field(
        description="Numbers as a person typed them (at most PIGEON_CONTACTS_LOOKUP_MAX_NUMBERS, "
        "1,000 by default; more is 413 too_many_numbers). Without a leading + they are read "
        "in the caller's own country. Numbers that cannot be read are skipped and counted.",
        examples=[["+1 415 555 0100", "(415) 555-0101"]],
    )


class PhotoOut(Body):
    url: str = Field(description="The image (GET with your token); 404 once hidden or changed.")
    thumbnail_url: str = Field(description="The server's JPEG thumbnail, at most 96x96.")
    mime_type: str
    width: int | None
    height: int | None
    updated_at: datetime


class ContactOut(Body):
    user_id: str
    phone: str = Field(description="E.164.")
    name: str
    about: str = Field(description="Empty unless the user's privacy settings show it to you.")
    photo: PhotoOut | None = Field(
        None, description="The profile photo, where the user's privacy settings show it to you."
    )


class ContactMatch(ContactOut):
    input: str = Field(description="The number as it was sent.")


class LookupOut(Body):
    matches: list[ContactMatch]
    skipped: int = Field(description="How many numbers could not be read as phone numbers.")


class ContactList(Body):
    contacts: list[ContactOut]


class BlockOut(Body):
    user_id: str
    blocked_at: datetime


class BlockList(Body):
    blocks: list[BlockOut]


UserIdText = Annotated[str, StringConstraints(max_length=64), _NO_NUL, _NO_NUL_DOC]


class PrivacyOut(Body):
    last_seen: Audience = Field(description="Who sees your last seen and whether you are online.")
    photo: Audience = Field(description="Who sees your profile photo.")
    about: Audience = Field(description="Who sees your about.")
    statuses: StatusAudience = Field(
        description="Who sees your status updates; except: your contacts but those on "
        "statusesExcept; only: those on statusesOnly."
    )
    read_receipts: bool = Field(
        description="Off: in 1:1 chats you send no read receipts and get none (groups keep them)."
    )
    groups: GroupAdders = Field(
        description="Who may add you to groups; others get 403 group_add_not_allowed."
    )
    statuses_except: list[str] = Field(description="User ids (the except list).")
    statuses_only: list[str] = Field(description="User ids (the only list).")


class PrivacyUpdate(Strict):
    """Only the settings sent change; values outside the lists are 422 invalid_request."""

    # Absent means unchanged; null is refused (and not in the schema).
    last_seen: Audience | SkipJsonSchema[None] = None
    photo: Audience | SkipJsonSchema[None] = None
    about: Audience | SkipJsonSchema[None] = None
    statuses: StatusAudience | SkipJsonSchema[None] = None
    read_receipts: bool | SkipJsonSchema[None] = None
    groups: GroupAdders | SkipJsonSchema[None] = None
    statuses_except: list[UserIdText] | SkipJsonSchema[None] = Field(
        None, description="Replaces the except list (at most PIGEON_STATUS_LIST_MAX_USERS)."
    )
    statuses_only: list[UserIdText] | SkipJsonSchema[None] = Field(
        None, description="Replaces the only list (at most PIGEON_STATUS_LIST_MAX_USERS)."
    )

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        # Absent means "unchanged"; a setting has no "null" value to set.
        if value is None:
            raise ValueError("a privacy setting cannot be null")
        return value


class PhotoRequest(Strict):
    attachment_id: Annotated[str, _NO_NUL, _NO_NUL_DOC] = Field(
        min_length=1,
        max_length=64,
        description="An image you uploaded (POST /v1/attachments); other types are refused.",
    )


# The length is the service's (a setting); the schema only keeps out what no database stores.
StatusText = Annotated[str, _NO_NUL, _NO_NUL_DOC]
StatusMediaId = Annotated[str, StringConstraints(min_length=1, max_length=64), _NO_NUL, _NO_NUL_DOC]


class StatusIn(Strict):
    """A text status (``text``, ``backgroundColor``, ``font``) or a media one
    (``attachmentId`` of an image or video you uploaded, ``caption``)."""

    text: StatusText = Field("", description="At most PIGEON_STATUS_MAX_LENGTH (700) characters.")
    background_color: (
        Annotated[str, StringConstraints(pattern=r"^#[0-9A-Fa-f]{6}$")] | SkipJsonSchema[None]
    ) = None
    font: Annotated[int, Field(ge=0, le=9)] | SkipJsonSchema[None] = None
    attachment_id: StatusMediaId | SkipJsonSchema[None] = None
    caption: StatusText = ""


class StatusOut(Body):
    id: str
    author_id: str
    text: str
    background_color: str | None
    font: int | None
    caption: str
    media: dict[str, object] | None = Field(
        description="For a media status: its type, size, dimensions and thumbnail (base64), "
        "and url, where GET returns the file."
    )
    created_at: datetime
    expires_at: datetime


class StatusList(Body):
    statuses: list[StatusOut]


class EmailRequest(Strict):
    email: Annotated[str, StringConstraints(min_length=3, max_length=254), _NO_NUL, _NO_NUL_DOC] = (
        Field(examples=["ada@example.org"])
    )
    locale: str | None = Field(
        None, max_length=16, pattern=r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*$"
    )


# -- account deletion ---------------------------------------------------------------


class DeletionCodeRequest(Strict):
    locale: str | None = Field(
        None, max_length=16, pattern=r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*$"
    )


class AccountDeletion(Strict):
    code: str = Field(pattern=DIGITS_6, description="The code texted by /v1/me/deletion-code.")


# -- broadcast lists -----------------------------------------------------------------

ListName = Annotated[str, StringConstraints(max_length=100), _NO_NUL, _NO_NUL_DOC]
UserIdField = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z]+$")
]


class BroadcastListCreate(Strict):
    name: ListName = ""
    recipients: list[UserIdField] = Field(
        min_length=1,
        max_length=10_000,
        description="User ids; at most PIGEON_BROADCAST_MAX_RECIPIENTS (256) once duplicates "
        "are dropped, else 400 too_many_recipients.",
    )


class BroadcastListUpdate(Strict):
    name: ListName | None = None
    recipients: list[UserIdField] | None = Field(
        None, min_length=1, max_length=10_000, description="Replaces the recipients."
    )


class BroadcastListOut(Body):
    id: str
    name: str
    recipients: list[str]
    created_at: datetime


class BroadcastListsOut(Body):
    lists: list[BroadcastListOut]


class EmailCode(Strict):
    code: str = Field(pattern=DIGITS_6)


class RecoveryEmailOut(Body):
    email: str | None = Field(description="The verified recovery email, or null.")
    verified_at: datetime | None
    pending_email: str | None = Field(description="An address waiting for its code.")


class MutedList(Body):
    muted: list[str] = Field(description="User ids whose statuses you muted.")


class ViewerOut(Body):
    user_id: str
    viewed_at: datetime


class ViewerList(Body):
    viewers: list[ViewerOut]


class PinResetConfirm(Strict):
    phone: str = Field(min_length=1, max_length=32, examples=["+14155550123"])
    code: str = Field(pattern=DIGITS_6, description="The code emailed to the recovery address.")

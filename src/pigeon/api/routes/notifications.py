"""My notification preferences and muted chats (shared by all my devices)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import Field

from pigeon.api.deps import ContainerDep, PrincipalDep
from pigeon.api.errors import error_responses
from pigeon.api.schemas import Body, Strict
from pigeon.domain.ids import is_valid_id
from pigeon.domain.push import ChatMute, MuteDuration, NotificationSettings
from pigeon.services.messaging import chat_not_found

router = APIRouter(prefix="/v1", tags=["notifications"])


class MutedChat(Body):
    chat_id: str
    muted_until: datetime | None = Field(description="null: muted until unmuted (always).")


class Notifications(Body):
    push: bool = Field(description="Push my devices while they have no live connection.")
    previews: bool = Field(
        description="Put the sender's name in pushes. Message text is never in a push."
    )
    muted_chats: list[MutedChat] = Field(
        description="Chats that send no pushes (except mentions of me) for now."
    )


class NotificationsUpdate(Strict):
    push: bool | None = None
    previews: bool | None = None


class MuteRequest(Strict):
    duration: MuteDuration = Field(description="8h, 1w (a week) or always.")


def _muted(mute: ChatMute) -> MutedChat:
    return MutedChat(chat_id=mute.chat_id, muted_until=mute.muted_until)


def _out(settings: NotificationSettings, mutes: list[ChatMute]) -> Notifications:
    return Notifications(
        push=settings.push, previews=settings.previews, muted_chats=[_muted(m) for m in mutes]
    )


@router.get("/me/notifications", response_model=Notifications, responses=error_responses(401))
async def get_notifications(principal: PrincipalDep, container: ContainerDep) -> Notifications:
    return _out(*await container.notifications.get(principal))


@router.patch(
    "/me/notifications",
    response_model=Notifications,
    responses=error_responses(400, 401, 413, 422),
)
async def update_notifications(
    body: NotificationsUpdate, principal: PrincipalDep, container: ContainerDep
) -> Notifications:
    """Turn pushes or previews on or off; fields left out stay as they are."""
    return _out(
        *await container.notifications.update(principal, push=body.push, previews=body.previews)
    )


@router.put(
    "/chats/{chat_id}/mute",
    response_model=MutedChat,
    responses=error_responses(400, 401, 404, 413, 422),
)
async def mute_chat(
    chat_id: str, body: MuteRequest, principal: PrincipalDep, container: ContainerDep
) -> MutedChat:
    """No pushes from this chat (except mentions of me) for 8 hours, a week, or always."""
    if not is_valid_id(chat_id):
        raise chat_not_found()
    mute = await container.notifications.mute(principal, chat_id, body.duration)
    assert mute is not None
    return _muted(mute)


@router.delete("/chats/{chat_id}/mute", status_code=204, responses=error_responses(401, 404))
async def unmute_chat(chat_id: str, principal: PrincipalDep, container: ContainerDep) -> Response:
    if not is_valid_id(chat_id):
        raise chat_not_found()
    await container.notifications.mute(principal, chat_id, None)
    return Response(status_code=204)

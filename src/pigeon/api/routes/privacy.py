"""The caller's privacy settings."""

from __future__ import annotations

from fastapi import APIRouter

from pigeon.api.deps import ContainerDep, PrincipalDep
from pigeon.api.errors import error_responses
from pigeon.api.schemas import PrivacyOut, PrivacyUpdate
from pigeon.domain.people import Privacy, StatusList

router = APIRouter(prefix="/v1/me/privacy", tags=["me"])


def _out(privacy: Privacy, lists: dict[StatusList, list[str]]) -> PrivacyOut:
    return PrivacyOut(
        last_seen=privacy.last_seen,
        photo=privacy.photo,
        about=privacy.about,
        statuses=privacy.statuses,
        read_receipts=privacy.read_receipts,
        groups=privacy.groups,
        statuses_except=lists[StatusList.EXCEPT],
        statuses_only=lists[StatusList.ONLY],
    )


@router.get("", response_model=PrivacyOut, responses=error_responses(401))
async def get_privacy(principal: PrincipalDep, container: ContainerDep) -> PrivacyOut:
    privacy = await container.privacy.get(principal)
    return _out(privacy, await container.privacy.status_lists(principal))


@router.patch("", response_model=PrivacyOut, responses=error_responses(400, 401, 422))
async def update_privacy(
    body: PrivacyUpdate, principal: PrincipalDep, container: ContainerDep
) -> PrivacyOut:
    """Change some settings: everyone, contacts or nobody for last seen and online, photo,
    about and statuses; read receipts on or off; everyone or contacts for group adds."""
    changes = body.model_dump(exclude_unset=True, by_alias=False)
    lists = {
        which: changes.pop(field)
        for which, field in (
            (StatusList.EXCEPT, "statuses_except"),
            (StatusList.ONLY, "statuses_only"),
        )
        if field in changes
    }
    privacy = await container.privacy.update(principal, changes, lists)
    return _out(privacy, await container.privacy.status_lists(principal))

"""Contacts: which numbers of an address book are on Pigeon, and the caller's contacts."""

from __future__ import annotations

from fastapi import APIRouter

from pigeon.api.deps import ClientIp, ContainerDep, PrincipalDep
from pigeon.api.errors import error_responses
from pigeon.api.photos import photo_out
from pigeon.api.schemas import ContactList, ContactLookup, ContactMatch, ContactOut, LookupOut
from pigeon.services.contacts import Contact

router = APIRouter(prefix="/v1/contacts", tags=["contacts"])


def _out(contact: Contact) -> ContactOut:
    return ContactOut(
        user_id=contact.user_id,
        phone=contact.phone,
        name=contact.name,
        about=contact.about,
        photo=photo_out(contact.photo),
    )


@router.post(
    "/lookup", response_model=LookupOut, responses=error_responses(400, 401, 413, 422, 429)
)
async def lookup(
    body: ContactLookup, principal: PrincipalDep, container: ContainerDep, ip: ClientIp
) -> LookupOut:
    """The users among these numbers; they become your contacts (their ids only).

    Limited per account and per address (429 with Retry-After): see docs/errors.md.
    """
    result = await container.contacts.lookup(principal, body.phones, ip)
    return LookupOut(
        matches=[
            ContactMatch(
                input=m.input,
                user_id=m.contact.user_id,
                phone=m.contact.phone,
                name=m.contact.name,
                about=m.contact.about,
                photo=photo_out(m.contact.photo),
            )
            for m in result.matches
        ],
        skipped=result.skipped,
    )


@router.get("", response_model=ContactList, responses=error_responses(401))
async def list_contacts(principal: PrincipalDep, container: ContainerDep) -> ContactList:
    """Your contacts (users matched by your lookups), by name."""
    return ContactList(
        contacts=[_out(c) for c in await container.contacts.list_contacts(principal)]
    )

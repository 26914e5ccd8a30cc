"""User and team routes."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from starlette import status as http_status

from hilo.auth import service
from hilo.auth.schemas import MemberIn, TeamIn, TeamList, TeamOut, UserIn, UserList, UserOut
from hilo.deps import CurrentPrincipal, Session
from hilo.errors import Forbidden

router = APIRouter(prefix="/api/v1", tags=["users and teams"])


@router.get("/users")
async def list_users(principal: CurrentPrincipal, session: Session) -> UserList:
    """The workspace's users."""
    users = await service.list_users(session, principal.workspace_id)
    return UserList(items=[UserOut.model_validate(u) for u in users])


@router.post("/users", status_code=http_status.HTTP_201_CREATED)
async def create_user(body: UserIn, principal: CurrentPrincipal, session: Session) -> UserOut:
    """Add a user (admins only)."""
    if principal.role != "admin":
        raise Forbidden()
    user = await service.do_create_user(
        session,
        workspace_id=principal.workspace_id,
        email=body.email,
        role=body.role,
        password=body.password,
        name=body.name,
        actor=principal.actor,
    )
    return UserOut.model_validate(user)


@router.get("/teams")
async def list_teams(principal: CurrentPrincipal, session: Session) -> TeamList:
    """The workspace's teams."""
    teams = await service.list_teams(session, principal.workspace_id)
    return TeamList(items=[TeamOut.model_validate(t) for t in teams])


@router.post("/teams", status_code=http_status.HTTP_201_CREATED)
async def create_team(body: TeamIn, principal: CurrentPrincipal, session: Session) -> TeamOut:
    """Add a team (admins and supervisors)."""
    if principal.role == "agent":
        raise Forbidden()
    team = await service.do_create_team(
        session, workspace_id=principal.workspace_id, name=body.name, actor=principal.actor
    )
    return TeamOut.model_validate(team)


@router.post("/teams/{team_id}/members", status_code=http_status.HTTP_204_NO_CONTENT)
async def add_member(
    team_id: uuid.UUID, body: MemberIn, principal: CurrentPrincipal, session: Session
) -> None:
    """Put a user in a team."""
    if principal.role == "agent":
        raise Forbidden()
    await service.do_add_member(
        session,
        workspace_id=principal.workspace_id,
        team_id=team_id,
        user_id=body.user_id,
        actor=principal.actor,
    )

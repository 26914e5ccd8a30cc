"""User and team API shapes."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class UserIn(BaseModel):
    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    name: str = Field(default="", max_length=200)
    role: str = "agent"
    password: str = Field(min_length=8, max_length=200)


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    email: str
    name: str
    role: str
    active: bool
    created_at: datetime


class UserList(BaseModel):
    items: list[UserOut]
    next_cursor: str | None = None


class TeamIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class TeamOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    created_at: datetime


class TeamList(BaseModel):
    items: list[TeamOut]
    next_cursor: str | None = None


class MemberIn(BaseModel):
    user_id: uuid.UUID

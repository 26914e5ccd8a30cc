"""Company and deal API shapes."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class CompanyIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    domain: str | None = Field(default=None, max_length=253)
    attributes: dict[str, Any] = Field(default_factory=dict)


class CompanyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    domain: str | None
    attributes: dict[str, Any]
    created_at: datetime


class CompanyPage(BaseModel):
    items: list[CompanyOut]
    next_cursor: str | None


class DealIn(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    contact_id: uuid.UUID | None = None
    company_id: uuid.UUID | None = None
    stage: str = Field(default="lead", min_length=1, max_length=40)
    amount: Decimal = Field(default=Decimal("0"), ge=0, max_digits=14, decimal_places=2)
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")


class DealPatch(BaseModel):
    title: str | None = Field(default=None, min_length=1, max_length=200)
    stage: str | None = Field(default=None, min_length=1, max_length=40)
    amount: Decimal | None = Field(default=None, ge=0, max_digits=14, decimal_places=2)


class DealOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    title: str
    contact_id: uuid.UUID | None
    company_id: uuid.UUID | None
    stage: str
    amount: Decimal
    currency: str
    created_at: datetime


class DealPage(BaseModel):
    items: list[DealOut]
    next_cursor: str | None


class ContactPatch(BaseModel):
    name: str | None = Field(default=None, max_length=200)
    company_id: uuid.UUID | None = None
    attributes: dict[str, Any] | None = None
    locale: str | None = Field(default=None, pattern=r"^(es|en)$")
    timezone: str | None = Field(default=None, max_length=64)

"""Request bodies: strict pydantic models (unknown fields, wrong types and over-long strings are 4xx).

They also feed `/openapi.json`, so the documented shapes are the enforced ones.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Short = Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)]
PhoneStr = Annotated[str, StringConstraints(strip_whitespace=True, max_length=32, pattern=r"^[0-9+\-() ]*$")]
GradeT = Literal["A", "B", "C"]
StatusT = Literal["lead", "prospect", "customer", "lost"]
KindT = Literal["call", "visit", "meeting", "wechat", "other"]
DecisionT = Literal["decision_maker", "influencer", "user", "purchaser", "other"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=5000)


class ContactIn(Strict):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    title: Annotated[str, StringConstraints(max_length=100)] | None = None
    mobile: PhoneStr | None = None
    phone: PhoneStr | None = None
    email: Annotated[str, StringConstraints(max_length=200, pattern=r"^[^@\s]+@[^@\s]+$")] | None = None
    wechat: Short | None = None
    decision_role: DecisionT | None = None
    is_primary: bool = False
    custom: dict[str, Any] = Field(default_factory=dict)


class ContactPatch(Strict):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)] | None = None
    title: Annotated[str, StringConstraints(max_length=100)] | None = None
    mobile: PhoneStr | None = None
    phone: PhoneStr | None = None
    email: Annotated[str, StringConstraints(max_length=200, pattern=r"^[^@\s]+@[^@\s]+$")] | None = None
    wechat: Short | None = None
    decision_role: DecisionT | None = None
    is_primary: bool | None = None
    custom: dict[str, Any] | None = None


class CustomerIn(Strict):
    name: Name
    industry: Short | None = None
    company_size: Annotated[str, StringConstraints(max_length=32)] | None = None
    source: Short | None = None
    grade: GradeT | None = None
    region: Short | None = None
    address: Annotated[str, StringConstraints(max_length=500)] | None = None
    status: StatusT = "lead"
    owner_id: int | None = None
    collaborator_ids: list[int] = Field(default_factory=list, max_length=50)
    tag_ids: list[int] = Field(default_factory=list, max_length=100)
    next_contact_at: datetime | None = None
    custom: dict[str, Any] = Field(default_factory=dict)
    contacts: list[ContactIn] = Field(default_factory=list, max_length=50)
    allow_duplicate: bool = False


class CustomerPatch(Strict):
    name: Name | None = None
    industry: Short | None = None
    company_size: Annotated[str, StringConstraints(max_length=32)] | None = None
    source: Short | None = None
    grade: GradeT | None = None
    region: Short | None = None
    address: Annotated[str, StringConstraints(max_length=500)] | None = None
    status: StatusT | None = None
    owner_id: int | None = None
    collaborator_ids: list[int] | None = Field(default=None, max_length=50)
    tag_ids: list[int] | None = Field(default=None, max_length=100)
    next_contact_at: datetime | None = None
    custom: dict[str, Any] | None = None
    allow_duplicate: bool = False


class FollowUpIn(Strict):
    kind: KindT
    content: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5000)]
    occurred_at: datetime | None = None
    contact_id: int | None = None
    location: Annotated[str, StringConstraints(max_length=300)] | None = None
    latitude: Annotated[float, Field(ge=-90, le=90)] | None = None
    longitude: Annotated[float, Field(ge=-180, le=180)] | None = None
    next_contact_at: datetime | None = None


class OpportunityIn(Strict):
    customer_id: int
    name: Name
    amount: Annotated[Decimal, Field(ge=0, le=Decimal("99999999999999.99"), decimal_places=2)] = Decimal(0)
    stage_key: Short | None = None
    expected_close_date: date | None = None
    owner_id: int | None = None
    custom: dict[str, Any] = Field(default_factory=dict)


class OpportunityPatch(Strict):
    name: Name | None = None
    amount: Annotated[Decimal, Field(ge=0, le=Decimal("99999999999999.99"), decimal_places=2)] | None = None
    stage_key: Short | None = None
    expected_close_date: date | None = None
    owner_id: int | None = None
    lost_reason: Annotated[str, StringConstraints(max_length=500)] | None = None
    custom: dict[str, Any] | None = None


class TagIn(Strict):
    group_name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=32)] = ""
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
    color: Annotated[str, StringConstraints(pattern=r"^#[0-9a-fA-F]{6}$")] | None = None


class TaskIn(Strict):
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    description: Annotated[str, StringConstraints(max_length=5000)] | None = None
    assignee_id: int | None = None
    due_at: datetime | None = None
    customer_id: int | None = None
    opportunity_id: int | None = None


class TaskPatch(Strict):
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = None
    description: Annotated[str, StringConstraints(max_length=5000)] | None = None
    assignee_id: int | None = None
    due_at: datetime | None = None
    status: Literal["open", "done", "cancelled"] | None = None


class FieldDefinitionIn(Strict):
    entity: Literal["customer", "contact", "opportunity"]
    key: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    label: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    field_type: Literal["text", "number", "date", "select", "multiselect"]
    required: bool = False
    options: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=200)
    min_value: float | None = None
    max_value: float | None = None
    max_length: Annotated[int, Field(ge=1, le=2000)] | None = None
    sort_order: int = 0


class DevLoginIn(Strict):
    corpId: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    userid: Annotated[str, StringConstraints(min_length=1, max_length=64)]


# ----------------------------------------------------------------------------- records (contacts … fields)


class ContactCreate(ContactIn):
    """A contact added to an existing customer; managers and admins may override a duplicate phone."""

    allow_duplicate: bool = False


class ContactUpdate(ContactPatch):
    allow_duplicate: bool = False


class OpportunityCreate(OpportunityIn):
    lost_reason: Annotated[str, StringConstraints(max_length=500)] | None = None


class TagPatch(Strict):
    group_name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=32)] | None = None
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)] | None = None
    color: Annotated[str, StringConstraints(pattern=r"^#[0-9a-fA-F]{6}$")] | None = None


class FieldDefinitionPatch(Strict):
    """entity, key and field_type are fixed once created: stored values depend on them."""

    label: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] | None = None
    required: bool | None = None
    options: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] | None = Field(
        default=None, max_length=200)
    min_value: float | None = None
    max_value: float | None = None
    max_length: Annotated[int, Field(ge=1, le=2000)] | None = None
    sort_order: int | None = None
    active: bool | None = None

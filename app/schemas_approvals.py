"""Request bodies and stored JSON shapes for approvals and automation rules.

The same models validate the admin API and the JSON columns (flow steps, rule conditions and actions),
so a stored definition is always one the services know how to run.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from models.org import Role

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]
Id = Annotated[int, Field(ge=1, le=2**63 - 1, strict=True)]  # strict: true is not user 1
FlowKindT = Literal["discount", "contract", "large_opportunity", "custom"]
SubjectT = Literal["opportunity", "customer"]
# Subject fields a condition may read; custom fields as "custom.<key>".
FIELD_PATTERN = r"^(amount|discount_rate|stage|grade|status|tags|industry|region|source|owner_id|custom\.[\w-]{1,64})$"
LOCKABLE = {"amount", "stage", "owner_id", "expected_close_date", "name", "custom", "grade", "status"}
# Only roles people can hold: a misspelt one would route to nobody (the approval stalls, the notice is lost).
ROLE_NAMES = "|".join(r.value for r in Role)


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=5000)

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        # PostgreSQL text and jsonb cannot hold NUL: refuse it here (a 422) rather than fail in the database.
        if _has_nul(data):
            raise ValueError("contains a NUL character")
        return data


class Comparison(Strict):
    field: Annotated[str, StringConstraints(pattern=FIELD_PATTERN)]
    op: Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "contains", "exists"]
    value: Any = None

    @model_validator(mode="after")
    def _value_fits_op(self):
        if self.op in {"gt", "gte", "lt", "lte"}:
            if isinstance(self.value, bool) or not isinstance(self.value, int | float | str):
                raise ValueError("gt/gte/lt/lte need a number")
            try:
                Decimal(str(self.value))
            except ArithmeticError:
                raise ValueError("gt/gte/lt/lte need a number") from None
        if self.op == "in" and not isinstance(self.value, list):
            raise ValueError("in needs a list")
        return self


Condition = Annotated[list[Comparison], Field(max_length=20)]


# ----------------------------------------------------------------------------- approver specs


class DirectLeader(Strict):
    type: Literal["direct_leader"]


class NthLeader(Strict):
    type: Literal["nth_leader"]
    n: Annotated[int, Field(ge=1, le=20)]


class DeptLeader(Strict):
    type: Literal["dept_leader"]
    department_id: Id


class NamedUsers(Strict):
    type: Literal["users"]
    user_ids: Annotated[list[Id], Field(min_length=1, max_length=50)]


class RoleMembers(Strict):
    type: Literal["role"]
    role: Annotated[str, StringConstraints(pattern=f"^({ROLE_NAMES})$")]


ApproverSpec = Annotated[DirectLeader | NthLeader | DeptLeader | NamedUsers | RoleMembers,
                         Field(discriminator="type")]


class Step(Strict):
    name: Title
    approvers: Annotated[list[ApproverSpec], Field(min_length=1, max_length=10)]
    mode: Literal["all", "any"] = "any"
    condition: Condition = Field(default_factory=list)


class FlowIn(Strict):
    name: Title
    kind: FlowKindT
    subject_type: SubjectT = "opportunity"
    description: Annotated[str, StringConstraints(max_length=500)] | None = None
    steps: Annotated[list[Step], Field(min_length=1, max_length=10)]
    cc: Annotated[list[ApproverSpec], Field(max_length=10)] = Field(default_factory=list)
    locked_fields: Annotated[list[str], Field(max_length=10)] = Field(default_factory=list)
    active: bool = True

    @field_validator("locked_fields")
    @classmethod
    def _lockable(cls, value: list[str]) -> list[str]:
        bad = sorted(set(value) - LOCKABLE)
        if bad:
            raise ValueError(f"not lockable: {bad}; choose from {sorted(LOCKABLE)}")
        return list(dict.fromkeys(value))


class FlowPatch(Strict):
    name: Title | None = None
    description: Annotated[str, StringConstraints(max_length=500)] | None = None
    steps: Annotated[list[Step], Field(min_length=1, max_length=10)] | None = None
    cc: Annotated[list[ApproverSpec], Field(max_length=10)] | None = None
    locked_fields: Annotated[list[str], Field(max_length=10)] | None = None
    active: bool | None = None

    @field_validator("locked_fields")
    @classmethod
    def _lockable(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else FlowIn._lockable(value)


# ----------------------------------------------------------------------------- approvals


class Outcome(Strict):
    """What becomes effective once approved."""

    discount_rate: Annotated[Decimal, Field(ge=0, lt=1, max_digits=6, decimal_places=4)] | None = None
    amount: Annotated[Decimal, Field(ge=0, max_digits=16, decimal_places=2)] | None = None
    note: Annotated[str, StringConstraints(max_length=500)] | None = None


class SubmitIn(Strict):
    kind: FlowKindT | None = None
    flow_id: Id | None = None
    subject_type: SubjectT
    subject_id: Id
    title: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    reason: Text | None = None
    outcome: Outcome = Field(default_factory=Outcome)

    @model_validator(mode="after")
    def _flow_named(self):
        if self.kind is None and self.flow_id is None:
            raise ValueError("kind or flow_id is required")
        return self


class DecideIn(Strict):
    decision: Literal["approve", "reject"]
    comment: Text | None = None
    # The step the approver was looking at, or the task id a card / to-do carries: a decision made on an
    # out-of-date view is refused with 409 instead of landing on a later step.
    step: Annotated[int, Field(ge=0, le=100)] | None = None
    task_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")] | None = None


# ----------------------------------------------------------------------------- automation rules

TriggerT = Literal["customer_created", "customer_assigned", "stage_changed", "follow_up_written",
                   "amount_crossed", "no_follow_up"]
# owner | owner_leader | role:<role> | user:<id>
Recipient = Annotated[str, StringConstraints(
    pattern=f"^(owner|owner_leader|role:({ROLE_NAMES})|" + r"user:[1-9]\d{0,18})$")]


class CreateTaskAction(Strict):
    type: Literal["create_task"]
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    due_in_days: Annotated[int, Field(ge=0, le=365)] = 0
    due_in_hours: Annotated[int, Field(ge=0, le=24 * 365)] = 0
    assignee: Recipient = "owner"


class NotifyAction(Strict):
    type: Literal["notify"]
    to: Annotated[list[Recipient], Field(min_length=1, max_length=10)]
    message: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class AssignOwnerAction(Strict):
    type: Literal["assign_owner"]
    # Round robin over these users, skipping inactive ones.
    user_ids: Annotated[list[Id], Field(min_length=1, max_length=100)]


class TagAction(Strict):
    type: Literal["add_tag", "remove_tag"]
    tag_id: Id


class StartApprovalAction(Strict):
    type: Literal["start_approval"]
    kind: FlowKindT


Action = Annotated[CreateTaskAction | NotifyAction | AssignOwnerAction | TagAction | StartApprovalAction,
                   Field(discriminator="type")]


class RuleParams(Strict):
    stage: Annotated[str, StringConstraints(max_length=32)] | None = None  # stage_changed: the stage key moved to
    threshold: Annotated[Decimal, Field(ge=0, max_digits=16, decimal_places=2)] | None = None  # amount_crossed
    days: Annotated[int, Field(ge=1, le=3650)] | None = None  # no_follow_up


class RuleIn(Strict):
    name: Title
    trigger: TriggerT
    params: RuleParams = Field(default_factory=RuleParams)
    condition: Condition = Field(default_factory=list)
    actions: Annotated[list[Action], Field(min_length=1, max_length=10)]
    enabled: bool = True

    @model_validator(mode="after")
    def _params_for_trigger(self):
        if self.trigger == "amount_crossed" and self.params.threshold is None:
            raise ValueError("amount_crossed needs params.threshold")
        if self.trigger == "no_follow_up" and self.params.days is None:
            raise ValueError("no_follow_up needs params.days")
        return self


class RulePatch(Strict):
    name: Title | None = None
    trigger: TriggerT | None = None
    params: RuleParams | None = None
    condition: Condition | None = None
    actions: Annotated[list[Action], Field(min_length=1, max_length=10)] | None = None
    enabled: bool | None = None


# ----------------------------------------------------------------------------- lead assignment and the pool

Labels = Annotated[list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]],
                   Field(max_length=50)]


class AssignmentRuleIn(Strict):
    name: Title
    regions: Labels = Field(default_factory=list)
    industries: Labels = Field(default_factory=list)
    sources: Labels = Field(default_factory=list)
    user_id: Id | None = None
    department_id: Id | None = None
    enabled: bool = True
    sort_order: Annotated[int, Field(ge=0, le=1_000_000)] = 0


class AssignmentRulePatch(Strict):
    name: Title | None = None
    regions: Labels | None = None
    industries: Labels | None = None
    sources: Labels | None = None
    user_id: Id | None = None
    department_id: Id | None = None
    enabled: bool | None = None
    sort_order: Annotated[int, Field(ge=0, le=1_000_000)] | None = None


class PoolReturnIn(Strict):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]

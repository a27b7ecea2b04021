"""The pydantic models of the JSON records read back from the store (progress, heartbeat, attempt,
failure, rounds): record_schema.json_record validates with them. Later fields are allowed, not trusted."""
from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

MAX_TEXT = 1 << 16  # one string field of a JSON record (a failure's traceback is the long one)
INT64_BOUND = 2**63


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)  # later fields are allowed, not trusted


class ProgressRecord(_Record):
    step: int = Field(ge=0, lt=INT64_BOUND)
    total_steps: int = Field(ge=0, lt=INT64_BOUND)
    wall_seconds: Optional[float] = Field(None, ge=0)
    top1: Optional[float] = Field(None, ge=0, le=1)
    updated_at: Optional[str] = Field(None, max_length=64)


class HeartbeatRecord(_Record):
    at: str = Field(max_length=64)
    pid: Optional[int] = Field(None, ge=0, lt=INT64_BOUND)
    host: Optional[str] = Field(None, max_length=256)
    run: Optional[str] = Field(None, max_length=256)


class AttemptRecord(_Record):
    at: str = Field(max_length=64)
    pid: Optional[int] = Field(None, ge=0, lt=INT64_BOUND)
    host: Optional[str] = Field(None, max_length=256)
    run: Optional[str] = Field(None, max_length=256)
    resume_step: int = Field(0, ge=0, lt=INT64_BOUND)
    warm: Optional[bool] = None


class FailureRecord(_Record):
    at: str = Field(max_length=64)
    error: str = Field(max_length=MAX_TEXT)
    traceback: str = Field("", max_length=MAX_TEXT)
    where: str = Field("", max_length=MAX_TEXT)


class ClaimState(_Record):
    id: int = Field(ge=1, le=8)
    verdict: str = Field(max_length=32)
    deciding: str = Field("", max_length=MAX_TEXT)   # the deciding point with its 95% CI, as report prints it
    test: str = Field("", max_length=MAX_TEXT)
    low: Optional[float] = None
    high: Optional[float] = None


class RoundsRecord(_Record):
    at: str = Field(max_length=64)
    round: int = Field(ge=1, lt=INT64_BOUND)
    units: int = Field(ge=0, lt=INT64_BOUND)
    max_units: int = Field(ge=0, lt=INT64_BOUND)
    go_on: bool
    why: str = Field(max_length=MAX_TEXT)
    claims: list[ClaimState] = Field(max_length=8)
    history: list[str] = Field(default_factory=list, max_length=10_000)  # one line per round judged


SCHEMAS: dict[str, type[_Record]] = {"progress": ProgressRecord, "heartbeat": HeartbeatRecord,
                                     "attempt": AttemptRecord, "failure": FailureRecord, "rounds": RoundsRecord}

"""Request and response models of the HTTP API (pydantic; they make the OpenAPI schema).

Every route declares its response model; a verdict's (``ScoreResponse``, with ``RuleHit``
and ``TokenWeight``) is the verdict's JSON document of ``mailsift.verdict``, re-exported
here. Messages travel as raw RFC 5322 bytes in the
body of ``POST /v1/score`` and base64-encoded (RFC 4648, standard alphabet) inside JSON.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from mailsift.verdict import Envelope, Label
from mailsift.verdict import RuleHit as RuleHit
from mailsift.verdict import ScoreResponse as ScoreResponse
from mailsift.verdict import TokenWeight as TokenWeight

# ---- shared field types --------------------------------------------------------------------


def _check_ip(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise ValueError("not an IP address") from None


def _check_b64(value: str) -> str:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64 (RFC 4648, standard alphabet, padded)") from None
    return value


IpAddress = Annotated[str | None, AfterValidator(_check_ip)]
Base64Message = Annotated[
    str,
    AfterValidator(_check_b64),
    Field(min_length=1, description="The raw RFC 5322 message, base64-encoded"),
]
ShortText = Annotated[str, Field(max_length=512)]
Address = Annotated[str, Field(min_length=1, max_length=512)]


def decode_b64(value: str) -> bytes:
    """Decode a value already checked by ``Base64Message``."""
    return base64.b64decode(value, validate=True)


class ErrorResponse(BaseModel):
    detail: str | list[dict[str, object]] = Field(description="Why the request failed")


# ---- scoring -------------------------------------------------------------------------------


class EnvelopeIn(BaseModel):
    """SMTP envelope facts, all optional (rspamd's /checkv2 takes the same)."""

    model_config = ConfigDict(extra="forbid")

    ip: IpAddress = Field(default=None, description="Client IP address")
    helo: ShortText | None = Field(default=None, description="HELO/EHLO name")
    mail_from: ShortText | None = Field(default=None, description="Envelope sender (MAIL FROM)")
    rcpt: list[Address] = Field(default_factory=list, max_length=1000, description="RCPT TO")
    user: ShortText | None = Field(default=None, description="Authenticated SMTP user")
    hostname: ShortText | None = Field(default=None, description="Verified client host name")

    def to_envelope(self) -> Envelope:
        return Envelope(
            client_ip=self.ip,
            helo=self.helo,
            mail_from=self.mail_from,
            rcpt_to=tuple(self.rcpt),
            auth_user=self.user,
            client_name=self.hostname,
        )


class BatchMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: ShortText | None = Field(default=None, description="Caller's id, echoed back")
    message: Base64Message
    envelope: EnvelopeIn | None = None


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: list[BatchMessage] = Field(min_length=1, max_length=1000)


class BatchResult(BaseModel):
    id: str | None = Field(description="The caller's id (JSON) or the part's name (multipart)")
    verdict: ScoreResponse


class BatchResponse(BaseModel):
    results: list[BatchResult]
    elapsed_ms: float


# ---- feedback ------------------------------------------------------------------------------


class FeedbackRequest(BaseModel):
    """Report a message as spam or ham, by verdict id or by the raw message."""

    model_config = ConfigDict(extra="forbid")

    label: Label
    verdict_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    message: Base64Message | None = None
    user: ShortText = Field(default="", description="Who reports it (recipient address)")


class FeedbackResponse(BaseModel):
    status: str = Field(
        description="learned (for everyone), personal (for this user; a corroboration vote), "
        "relabelled, duplicate, contested, budget_capped, ..."
    )
    digest: str
    label: Label
    verdict_id: str | None = None
    feedback_id: int | None = None
    scope: str = Field(default="", description="global, personal, or empty (nothing learned)")
    votes: int = Field(default=0, description="reporters agreeing on this campaign, net")
    detail: str = ""


# ---- lists ---------------------------------------------------------------------------------

UserListKind = Literal["trusted", "untrusted"]
GlobalListKind = Literal["allow", "block"]


class ListEntryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pattern: Annotated[str, Field(min_length=1, max_length=512)] = Field(
        description='"user@example.com", "*@example.com", "example.com", an IP or a CIDR block'
    )
    comment: ShortText = ""


class ListEntryOut(BaseModel):
    kind: str
    pattern: str
    owner: str = Field(description="The user whose list it is; empty for global lists")
    created: float
    added_by: str = ""
    comment: str = ""


class ListResponse(BaseModel):
    entries: list[ListEntryOut]


class ListChange(BaseModel):
    changed: bool = Field(description="False when the entry was already there (or absent)")
    entry: ListEntryOut


# ---- verdicts and models -------------------------------------------------------------------


class VerdictOut(BaseModel):
    verdict_id: str
    created: float
    digest: str
    score: float
    probability: float
    action: str
    model_version: str
    recipients: list[str]
    sender: str
    client_ip: str
    rules: list[RuleHit]
    list_decision: str | None = None
    reason: str = ""


class ModelInfo(BaseModel):
    version: str
    path: str | None = None
    kind: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    aliases: list[str] = Field(default_factory=list)
    source: str = Field(default="", description="mlflow, default, ...")


class ModelsResponse(BaseModel):
    serving: ModelInfo = Field(description="The model this worker scores with")
    champion: ModelInfo | None = Field(description="The registry's champion, if any")
    versions: list[ModelInfo] = Field(description="Registered versions, newest first")


class ReloadResponse(BaseModel):
    previous_version: str
    version: str
    changed: bool


# ---- health --------------------------------------------------------------------------------


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    ready: bool
    model_loaded: bool
    store_reachable: bool
    model_version: str | None = None
    detail: str = ""
    # the dependencies that are down right now ("postgresql", "sqlite"), by name
    down: list[str] = Field(default_factory=list)

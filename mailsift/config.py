"""One settings object for every component.

Read from a TOML file (``$MAILSIFT_CONFIG``, else ``./mailsift.toml`` when present) with
environment overrides: ``MAILSIFT_<BLOCK>__<FIELD>``, e.g. ``MAILSIFT_SMTP__PORT=2525``,
``MAILSIFT_STORE__URL=postgresql://...``, or a whole block as JSON (``MAILSIFT_SMTP={...}``).
A few short aliases exist for the settings people change most (``ENV_ALIASES``):
``MAILSIFT_CORPUS`` (paths.corpus), ``MAILSIFT_MODEL`` (model.path). ``MAILSIFT_MODEL`` is
spelled like the ``model`` block's JSON variable, so it is always the alias: the ``model``
block is set field by field (``MAILSIFT_MODEL__KIND=nb``).

Every component takes the block it needs (``settings.smtp``, ``settings.greylist`` ...) through
its constructor; nothing reads the environment on its own.

The SMTP checks' blocks (``[dnsbl]``, ``[rdns]``, ``[auth]``, ``[barring]``, ``[antivirus]``,
``[greylist]`` and those of checks registered by other modules) are not fields here: each
check registers its settings model and block name (``mailsift.smtpd.checks.registry``) and
``Settings.check_blocks`` holds them, validated by those models, read from the same TOML
tables and ``MAILSIFT_<BLOCK>__<FIELD>`` variables as the fields (``settings.check_block``,
or the typed shortcuts ``settings.dnsbl`` ...). ``[checks]`` says which checks run in which
order, ``[scores]`` overrides the scores of their symbols.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "MAILSIFT_"
# short environment variables -> (block, field) they set
ENV_ALIASES: dict[str, tuple[str, str]] = {
    "MAILSIFT_CORPUS": ("paths", "corpus"),
    "MAILSIFT_MODEL": ("model", "path"),
}
_SHARED_CORPUS = PROJECT_ROOT.parent / "shared" / "corpora" / "spamassassin"


def _default_corpus() -> Path | None:
    return _SHARED_CORPUS if _SHARED_CORPUS.exists() else None


def _default_corpora() -> Path | None:
    return _SHARED_CORPUS.parent if _SHARED_CORPUS.parent.exists() else None


class PathsSettings(BaseModel):
    """Where things live. Relative paths are taken relative to the working directory."""

    var_dir: Path = Path("var")  # databases, spools, caches, generated certificates
    models_dir: Path = Path("models")
    corpus: Path | None = Field(default_factory=_default_corpus)
    # a folder of corpora laid out as ../shared/corpora (the SpamAssassin corpus in
    # spamassassin/, other archives in modern/): `train --default` learns from all of them,
    # `evaluate --generalise` and the benches split them by source
    corpora: Path | None = Field(default_factory=_default_corpora)


class ThresholdSettings(BaseModel):
    """Spam probability thresholds, in increasing order: ham < spam <= hold <= reject.

    Unset (None), each comes from the served model: training calibrates them on ham the
    model's parts were not trained on (see ``Hyper.calibrate_*``); a model without
    calibrated thresholds gets ``FALLBACK``. A value set here overrides the model's.
    """

    FALLBACK: ClassVar[dict[str, float]] = {"spam": 0.5, "hold": 0.9, "reject": 0.995}

    spam: float | None = None  # at or above: tagged spam (X-Spam-Flag: YES), delivered
    hold: float | None = None  # at or above: held in quarantine
    reject: float | None = None  # at or above: rejected at SMTP time (550 5.7.1)
    required_score: float = 5.0  # SpamAssassin-scale score that corresponds to `spam`

    def resolved(self, model_thresholds: dict[str, float] | None = None) -> ResolvedThresholds:
        """The thresholds in force: these settings, else the model's, else FALLBACK."""
        base = {**self.FALLBACK, **(model_thresholds or {})}
        spam = self.spam if self.spam is not None else base["spam"]
        hold = self.hold if self.hold is not None else max(base["hold"], spam)
        reject = self.reject if self.reject is not None else max(base["reject"], hold)
        return ResolvedThresholds(spam, hold, reject, self.required_score)


class ResolvedThresholds(NamedTuple):
    spam: float
    hold: float
    reject: float
    required_score: float


class RulesSettings(BaseModel):
    """SpamAssassin-syntax rule files: ours, plus the stock rules when installed."""

    use_default: bool = True
    # None: use /usr/share/spamassassin (and /etc/spamassassin) when present
    stock_paths: list[Path] | None = None
    use_stock: bool = True
    extra_paths: list[Path] = Field(default_factory=list)
    hyperscan: bool = True
    # decide prefilter hits, counts and the patterns Hyperscan refuses with the native PCRE2
    # (JIT) matcher; False: Python re (the same results, measured on the corpus; slower)
    pcre: bool = True
    cache_dir: Path | None = None  # default: <var_dir>/cache/rules
    max_scan_bytes: int = 256 * 1024  # body text scanned by rules
    # SpamAssassin's trust boundary in the Received chain (the relay rules read the first
    # untrusted hop): networks as SpamAssassin writes them ("10.1.", "192.0.2.0/24",
    # "!10.1.2.3", IPv6); 127/8 and ::1 always count. Unset (both None): trust is inferred
    # (private IPs and authenticated hops trusted). With one of the two set the other is
    # the same list. msa_networks: relays that take authenticated submissions (the hops
    # before them count as trusted)
    trusted_networks: list[str] | None = None
    internal_networks: list[str] | None = None
    msa_networks: list[str] = Field(default_factory=list)
    # skip rules that cannot change a reported hit (score 0, sub-rules no scoring rule uses),
    # as SpamAssassin does; `mailsift rules test --subrules` then shows only the used ones
    prune_unused: bool = True
    # rule-name globs not compiled: by default the few stock rules whose regexes Hyperscan
    # cannot take and Python re needs milliseconds a message for (huge ReplaceTags
    # expansions, nested bounded repeats); see bench/bench_rules.py
    exclude: list[str] = Field(
        default_factory=lambda: [
            "__FILL_THIS_FORM_*",
            "__HOURS_DEADLINE",
            "__MY_MALWARE",
            "__PAY_ME",
            "__YOUR_ONAN",
            "__YOUR_PASSWORD",
            "__YOUR_PERSONAL",
            "__YOUR_WEBCAM",
            "T_FUZZY_OPTOUT",
        ]
    )

    @field_validator("trusted_networks", "internal_networks", "msa_networks")
    @classmethod
    def _networks(cls, v: list[str] | None) -> list[str] | None:
        from mailsift.classifier.rules.relays import NetSet

        if v is not None:
            NetSet.parse(v)  # ValueError names the network that does not parse
        return v


class ModelSettings(BaseModel):
    kind: Literal["nb", "cnb", "logreg", "blend"] = "blend"  # see mailsift.classifier.model
    path: Path | None = None  # None: the MLflow champion, else models/default
    n_features: int = 2**20
    seed: int = 42


class MessageSettings(BaseModel):
    max_parse_bytes: int = 10 * 1024 * 1024  # bytes of a message handed to the MIME parser
    max_text_chars: int = 200_000  # characters of decoded text kept for features
    max_parts: int = 200
    # CPU milliseconds (the scoring thread's) one message may spend in parsing and rules;
    # over it, the remaining rule stages are skipped, the message is scored on what was
    # reached and its verdict carries SCAN_BUDGET_EXCEEDED. 0: unbounded
    scan_budget_ms: float = 500.0


class StoreSettings(BaseModel):
    url: str = ""  # "" -> sqlite:///<var_dir>/mailsift.db ; postgresql://... for shared
    pool_size: int = 4
    # PostgreSQL deadlines, in seconds: opening a connection, and waiting for a free pooled
    # connection. Past either, the call fails at once with StoreUnavailable (the API answers
    # 503 with Retry-After, the SMTP filter 451) instead of hanging while the database is away.
    connect_timeout: float = Field(default=2.0, gt=0)
    pool_timeout: float = Field(default=2.0, gt=0)


class FeedbackSettings(BaseModel):
    # reports per reporter (a user, a key) counted in the last hour; trusted reporters are
    # not capped. Each reporter has a bucket of its own: a flood locks out only its sender.
    per_user_per_hour: int = 200
    # sources whose reports are trusted global lessons (the model learns them at once);
    # admin keys, keys with the "trusted" scope and the quarantine's admins are trusted too
    trusted_sources: list[str] = Field(default_factory=lambda: ["admin", "trap"])
    # corroboration: a user's report teaches everyone only when this many distinct reporters
    # (of distinct domains with corroborate_domains) say the same of copies of the message
    # (near-duplicates: min-hash bands of the body words), net of those who say the opposite,
    # within vote_days; unconfirmed votes lapse after that
    corroborate: int = 3
    corroborate_domains: bool = True
    vote_days: float = 7.0
    # how far all of one reporter's corroborated lessons together may move any message's
    # log-odds (the L1 norm of their additive corrections; renewed by a full retrain)
    reporter_budget: float = 1.0
    # a corroborated lesson moves its message this far (log-odds) past thresholds.spam
    global_margin: float = 1.0
    # a user's own verdict moves that message, for that user, to this probability at least
    # (spam) / at most (ham): their mail follows their verdicts at once
    user_spam_probability: float = 0.98
    user_ham_probability: float = 0.02
    # optional per-weight cap on trusted lessons (log-odds from the base model); None: off.
    # It bounds no message's log-odds (the budgets above do that for users' lessons)
    max_drift: float | None = None
    # a trusted lesson counts as this many training messages (naive Bayes counts, the linear
    # step): a verdict is about current mail. 3 (and step 4) measured best of 1-10 (2-8) on
    # the online streams of bench/bench_online.py (1-ROCA% 0.38 -> 0.14 on the modern sets)
    learn_weight: float = 3.0
    # "fast": sparse in-place updates of the touched weights (< 5 ms); "partial_fit": the
    # model's own SpamModel.partial_fit / unlearn (exact sklearn semantics, slower)
    mode: Literal["fast", "partial_fit"] = "fast"
    step: float = 4.0  # fast mode: how far (log-odds) one report moves its own message
    keep_samples: bool = True  # keep each scored message (zlib) to learn from a verdict id
    sample_days: float = 14.0  # ... for this long (then `mailsift retrain --purge` drops it)
    sample_max_bytes: int = 1024 * 1024  # larger messages are kept truncated
    sync_interval: float = 1.0  # seconds between checks for other processes' feedback


class MlflowSettings(BaseModel):
    tracking_uri: str = ""  # "" -> sqlite:///<var_dir>/mlflow.db
    artifact_location: str = ""  # "" -> <var_dir>/mlartifacts
    experiment: str = "mailsift"
    registered_model: str = "mailsift"
    champion_alias: str = "champion"
    # a challenger must be no worse than the champion on each of these (higher is better
    # unless the name starts with "-": then lower is better)
    gate_metrics: list[str] = Field(
        default_factory=lambda: [
            "-one_minus_roca_pct",
            "recall_at_fpr_0.001",
            "-oos_one_minus_roca_pct",
        ]
    )
    gate_tolerance: float = 0.0


class TrainSettings(BaseModel):
    test_fraction: float = 0.2
    n_jobs: int = 2
    max_messages: int | None = None


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2
    max_body_bytes: int = 25 * 1024 * 1024
    # seconds a client has to send a whole request body once its headers are in; over it,
    # 408 and the connection is closed. 0: no limit
    body_timeout: float = 60.0
    require_keys: bool = True
    scorer_url: str | None = None  # the SMTP filter scores over HTTP when set
    scorer_api_key: str | None = None
    max_batch: int = 1000  # messages in one POST /v1/score/batch
    key_cache_seconds: float = 5.0  # verified API keys cached per worker (revocation delay)
    reload_poll_seconds: float = 1.0  # workers follow a model reload within this time
    log_level: str = "INFO"


class SmtpSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 2525
    submission_port: int | None = 4465  # implicit TLS; None disables
    hostname: str = "mx.mailsift.test"
    local_domains: list[str] = Field(default_factory=lambda: ["mailsift.test"])
    mailboxes_file: Path | None = None  # one address per line; None: any local part is valid
    accounts_file: Path | None = (
        None  # accounts JSON of an earlier release: imported into the store once
    )
    relay_networks: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    relay_allowed_recipients: list[str] = Field(default_factory=list)  # Type 2 wildcards
    # networks whose clients may send XFORWARD (the Postfix in front, as a before-queue proxy
    # or a content filter): the checks then see the original client; empty: not offered
    xforward_hosts: list[str] = Field(default_factory=list)
    next_hop_host: str = "127.0.0.1"
    next_hop_port: int = 10025
    mode: Literal["proxy", "spool"] = "proxy"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    require_tls_for_auth: bool = True
    max_message_size: int = 25 * 1024 * 1024
    max_recipients: int = 100
    # simultaneous connections per client IP, summed over the workers; a connection counts
    # until its worker has read the client's close, so a client that reconnects at once
    # while a worker is busy can briefly be refused one early (as Postfix's anvil counts)
    max_connections_per_ip: int = 20
    max_commands_per_session: int = 1000
    # seconds of silence from a client before it is disconnected (Postfix's smtpd_timeout:
    # between commands, and between reads of message content)
    idle_timeout: float = 300.0
    # seconds a command line or a line of message content may take to arrive once its first
    # byte has (Postfix's smtpd_per_record_deadline): a client dripping a byte at a time is
    # cut off with 421 4.4.2. 0: no deadline
    record_deadline: float = 30.0
    authserv_id: str = "mx.mailsift.test"
    auth_failures_before_throttle: int = 3
    barred_message: str = "Address barred by local policy"
    auth_throttle_window: float = 600.0  # seconds a failed AUTH counts against the IP
    auth_failure_delay: float = 1.0  # pause before answering a failed AUTH
    max_line_length: int = 10000  # longer lines in DATA get 500 (RFC 5321 minimum is 1000)
    bare_newlines: Literal["normalize", "reject"] = "normalize"  # smuggling forms always 550
    check_timeout: float = 60.0  # a check running longer is a tempfail
    delivery_timeout: float = 60.0  # per next-hop SMTP step
    # proxy mode: connections to the next hop kept open between messages, per worker (0: a
    # connection per message); one idle longer than next_hop_idle_time seconds is closed
    next_hop_idle_connections: int = Field(default=16, ge=0)
    next_hop_idle_time: float = 5.0
    spool_retry_initial: float = 60.0  # store-and-forward backoff: doubles per attempt
    spool_retry_max: float = 3600.0
    # a message the next hop has not taken after this long stops being retried: it moves to
    # spool/failed/ for the operator (logged as an error; no bounce). Postfix: 5 days
    spool_max_age: float = 5 * 86400.0
    spool_concurrency: int = 8
    # Prometheus metrics of the filter (outages, tempfails by reason) over HTTP on
    # smtp.host:metrics_port; None: not served
    metrics_port: int | None = None
    # worker processes of `mailsift serve smtp` (each scores on a core of its own); 0: one
    # per CPU core; 1: a single process, without a supervisor
    workers: int = Field(default=0, ge=0)
    # seconds SIGTERM waits for sessions to finish the transaction under way (idle sessions
    # are closed at once with 421 4.3.2)
    shutdown_timeout: float = 10.0
    # the filter sits after the MTA's queue (Postfix content_filter): the MTA already accepted
    # the message and would bounce a refusal to its sender (backscatter), so a spam reject or
    # a check's rejection (a virus) is held in the quarantine instead of answered 550
    after_queue: bool = False


class MilterSettings(BaseModel):
    """``mailsift serve milter``: the Sendmail/Postfix milter (protocol version 6)."""

    host: str = "127.0.0.1"
    port: int = 11332
    socket: Path | None = None  # a Unix socket instead of TCP (Postfix: unix:/path)
    socket_mode: int = 0o660
    idle_timeout: float = 600.0  # an MTA connection silent this long is closed
    shutdown_timeout: float = 30.0  # on SIGTERM, seconds the messages under way may take
    # worker processes of `mailsift serve milter`; 0: one per CPU core; 1: one process
    workers: int = Field(default=0, ge=0)
    max_message_size: int = 25 * 1024 * 1024  # beyond: 552 5.3.4 (the MTA's own limit first)


class DnsSettings(BaseModel):
    nameservers: list[str] = Field(default_factory=list)  # empty: system resolver
    port: int = 53
    timeout: float = 3.0  # per query
    session_budget: float = 10.0  # all DNS work of one SMTP session


class GreylistSettings(BaseModel):
    enabled: bool = True
    delay: float = 300.0
    retry_window: float = 2 * 86400.0
    expire: float = 35 * 86400.0
    auto_whitelist_after: int = 5
    backend: str = ""  # "" -> sqlite in var_dir; "redis://127.0.0.1:6379/0"
    sender_pool_domains: list[str] = Field(default_factory=list)
    redis_prefix: str = "mailsift:greylist:"  # key prefix in a shared Redis
    on_error: Literal["tempfail", "accept"] = "tempfail"  # greylist store down


class DnsblZone(BaseModel):
    zone: str
    weight: float = 3.0
    kind: Literal["ip", "domain"] = "ip"
    # return code -> reason, e.g. {"127.0.0.2": "SBL", "127.0.0.4": "XBL"}
    codes: dict[str, str] = Field(default_factory=dict)
    symbol: str = ""  # symbol stem, e.g. "SPAMHAUS_ZEN"; "" -> from the zone's first labels


class DnsblSettings(BaseModel):
    enabled: bool = True
    zones: list[DnsblZone] = Field(default_factory=list)
    reject_threshold: float | None = None  # total weight at which to reject at connect
    uri_reject_threshold: float | None = None  # total domain-list weight to reject at DATA
    max_uri_domains: int = 20  # distinct body URL domains looked up per message


class RdnsSettings(BaseModel):
    """``[rdns]``: reverse DNS and HELO checks. Their scores are in ``[scores]``: the former
    ``score_no_ptr``, ``score_no_fcrdns`` and ``score_bad_helo`` keys still set them
    (``RDNS_SCORE_KEYS``), a ``[scores]`` entry of the same symbol wins."""

    enabled: bool = True
    reject_no_ptr: bool = False
    reject_bad_helo: bool = False
    reject_no_fcrdns: bool = False
    our_ips: list[str] = Field(default_factory=list)  # our public addresses (HELO claims)


# the former score keys of [rdns] -> the symbols whose [scores] entry they set
RDNS_SCORE_KEYS: dict[str, tuple[str, ...]] = {
    "score_no_ptr": ("RDNS_NONE",),
    "score_no_fcrdns": ("RDNS_NOT_FCRDNS",),
    "score_bad_helo": ("HELO_MISSING", "HELO_BAD_SYNTAX", "HELO_BARE_IP"),
}


class AuthChecksSettings(BaseModel):
    spf: bool = True
    dkim: bool = True
    arc: bool = True
    dmarc: bool = True
    reject_dmarc_reject: bool = False
    reject_spf_fail: bool = False  # 550 5.7.23 on an SPF fail of MAIL FROM (RFC 7372)
    dkim_min_key_bits: int = 1024


class BarringSettings(BaseModel):
    sender: list[str] = Field(default_factory=list)
    recipient: list[str] = Field(default_factory=lambda: ["*!*", '"*@*"', '"*@*"@*'])
    sender_file: Path | None = None
    recipient_file: Path | None = None


class AntivirusSettings(BaseModel):
    enabled: bool = True
    clamd_socket: str = "/var/run/clamav/clamd.ctl"  # or "tcp://127.0.0.1:3310"
    timeout: float = 30.0
    max_scan_bytes: int = 50 * 1024 * 1024
    on_error: Literal["tempfail", "accept"] = "tempfail"


class SpamdSettings(BaseModel):
    """``mailsift serve spamd``: SpamAssassin's spamd protocol (spamc, Exim, amavis...)."""

    host: str = "127.0.0.1"
    port: int = 783
    # clients outside these networks are disconnected unanswered (spamd's --allowed-ips)
    allowed_networks: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    max_message_size: int = 25 * 1024 * 1024  # after zlib inflation; larger: EX_PROTOCOL
    timeout: float = 30.0  # reading a request (spamd's --timeout-tcp)
    scan_timeout: float = 300.0  # scoring or learning one message (spamd's --timeout-child)
    max_connections: int = 64  # concurrent clients; more get EX_TEMPFAIL at once
    allow_tell: bool = False  # TELL (spamc -L/-C) teaches the model (spamd's --allow-tell)
    user_domain: str = ""  # appended to a bare User: name ("alice" -> alice@<user_domain>)
    hostname: str = ""  # named in REPORT texts; "" -> this machine's host name
    tls_cert: Path | None = None  # both set: every connection is TLS (spamc -S)
    tls_key: Path | None = None
    # worker processes of `mailsift serve spamd` (each scores on a core of its own); 0: one
    # per CPU core; 1: one process. max_connections holds per worker
    workers: int = Field(default=0, ge=0)


class QuarantineSettings(BaseModel):
    spool_dir: Path | None = None  # default: <var_dir>/quarantine
    retention_days: float = 30.0


class UiSettings(BaseModel):
    secret_key: str = ""  # "" -> generated once into <var_dir>/ui-secret
    secure_cookies: bool = True
    session_max_age: int = 8 * 3600  # seconds a login lasts (sessions live in the store)
    # login throttle, counted in the store over `login_window` seconds: after
    # `login_failures` failures of one account from one client address, that pair is refused
    # (429) until the window passes; other accounts behind the same address are not
    login_failures: int = 5
    login_window: float = 300.0
    # soft limits: past this many failures from one address (any account), of one account
    # (any address) or in all, every login attempt they cover waits `login_slow_delay`
    # seconds before its password is checked (slowed, never locked out)
    login_soft_per_address: int = 20
    login_soft_per_account: int = 10
    login_soft_total: int = 100
    login_slow_delay: float = 2.0


DEFAULT_CHECK_ORDER: tuple[str, ...] = (
    "lists_client", "dnsbl", "rdns",  # CONNECT
    "helo",  # HELO
    "lists_sender", "barring_sender", "spf",  # MAIL
    "barring_recipient", "lists_recipient", "greylist",  # RCPT
    "antivirus", "dkim", "dmarc", "uribl",  # DATA
)  # fmt: skip


class ChecksSettings(BaseModel):
    """``[checks]``: the SMTP checks that run, like Haraka's ``config/plugins``.

    ``order`` names the checks (``mailsift checks`` lists the registered ones); a check not
    named does not run, a named one runs when its own block enables it (``[dnsbl] enabled``
    ...). Checks run by stage; within a stage, in this order. ``modules`` are imported
    before the settings are read: each registers its own checks, settings block and scores.
    """

    order: list[str] = Field(default_factory=lambda: list(DEFAULT_CHECK_ORDER))
    modules: list[str] = Field(default_factory=list)


class ScoresSettings(BaseModel):
    """``[scores]``: symbol name -> score, overriding the scores table of the checks
    (``mailsift.smtpd.checks.scores``), e.g. ``RDNS_NONE = 2.0``. A name no registered check
    emits is an error."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="before")
    @classmethod
    def _numbers(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out: dict[str, float] = {}
        for name, value in data.items():
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValueError(f"scores.{name}: a number is needed, not {value!r}")
            try:
                out[str(name).upper()] = float(value)
            except ValueError:
                raise ValueError(f"scores.{name}: a number is needed, not {value!r}") from None
        return out

    def overrides(self) -> dict[str, float]:
        return {k: float(v) for k, v in (self.model_extra or {}).items()}


class CheckBlocks(BaseModel):
    """The settings block of every registered check, by block name (``dnsbl`` ...), each an
    instance of the model its check registered. Filled by ``Settings`` from the top-level
    tables (``[dnsbl]``) and variables (``MAILSIFT_DNSBL__ENABLED``)."""

    model_config = ConfigDict(extra="allow")


M = TypeVar("M", bound=BaseModel)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="ignore",
    )

    paths: PathsSettings = Field(default_factory=PathsSettings)
    thresholds: ThresholdSettings = Field(default_factory=ThresholdSettings)
    rules: RulesSettings = Field(default_factory=RulesSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    message: MessageSettings = Field(default_factory=MessageSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    feedback: FeedbackSettings = Field(default_factory=FeedbackSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    milter: MilterSettings = Field(default_factory=MilterSettings)
    dns: DnsSettings = Field(default_factory=DnsSettings)
    checks: ChecksSettings = Field(default_factory=ChecksSettings)
    scores: ScoresSettings = Field(default_factory=ScoresSettings)
    check_blocks: CheckBlocks = Field(default_factory=CheckBlocks)
    spamd: SpamdSettings = Field(default_factory=SpamdSettings)
    quarantine: QuarantineSettings = Field(default_factory=QuarantineSettings)
    ui: UiSettings = Field(default_factory=UiSettings)

    @model_validator(mode="before")
    @classmethod
    def _gather_check_blocks(cls, data: Any) -> Any:
        """Move the registered checks' blocks (top-level tables) into ``check_blocks`` and
        validate each with its check's model; map the former ``[rdns] score_*`` keys."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        given = data.get("check_blocks") or {}
        if isinstance(given, BaseModel):
            given = dict(given.model_extra or {})
        raw: dict[str, Any] = dict(given)
        strange = (set(data) | set(raw)) - set(cls.model_fields) - set(BUILTIN_CHECK_BLOCKS)
        modules = _check_modules(data)
        if modules or strange:  # perhaps the block of a check registered elsewhere
            _load_check_registry(modules)
        known = _check_block_models()
        for name in known:
            if name in data:
                top = data.pop(name)
                base = raw.get(name)
                if isinstance(base, BaseModel):
                    base = base.model_dump()
                if isinstance(top, dict) and isinstance(base, dict):
                    top = {**base, **top}
                raw[name] = top
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ValueError(f"check_blocks: no registered check reads {unknown}")
        rdns = raw.get("rdns")
        if isinstance(rdns, dict) and any(k in rdns for k in RDNS_SCORE_KEYS):
            rdns = dict(rdns)
            scores = data.get("scores") or {}
            scores = (
                dict(scores.model_extra or {}) if isinstance(scores, BaseModel) else dict(scores)
            )
            for key, symbols in RDNS_SCORE_KEYS.items():
                if key in rdns:
                    value = rdns.pop(key)
                    for sym in symbols:
                        scores.setdefault(sym, value)
            raw["rdns"] = rdns
            data["scores"] = scores
        blocks: dict[str, BaseModel] = {}
        for name, model in known.items():
            value = raw.get(name)
            blocks[name] = value if isinstance(value, model) else model.model_validate(value or {})
        data["check_blocks"] = CheckBlocks(**blocks)
        return data

    @model_validator(mode="after")
    def _known_checks_and_symbols(self) -> Settings:
        from mailsift.smtpd.checks.registry import CHECKS
        from mailsift.smtpd.checks.scores import SCORES

        def unknown() -> list[str]:
            return [
                n for n in self.checks.order if n not in CHECKS and n not in DEFAULT_CHECK_ORDER
            ]

        def bad() -> list[str]:
            return sorted(n for n in self.scores.overrides() if n not in SCORES)

        if unknown() or bad():  # a check of this package not imported yet may know them
            _load_check_registry(self.checks.modules)
        if unknown():
            raise ValueError(
                f"checks.order: unknown checks {unknown()} (registered: {', '.join(CHECKS)})"
            )
        if bad():
            raise ValueError(
                f"scores: unknown symbols {bad()} (`mailsift checks` lists each check's symbols)"
            )
        return self

    @model_serializer(mode="wrap")
    def _dump_check_blocks_on_top(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A dump has each check block at the top (``data["greylist"]``), as the TOML file
        and the variables spell them, so ``Settings(**dump)`` rebuilds the same settings."""
        data: dict[str, Any] = handler(self)
        blocks = data.pop("check_blocks", None)
        if isinstance(blocks, dict):
            data.update(blocks)
        return data

    def check_block(self, model: type[M]) -> M:
        """The settings block of a registered check settings model."""
        for value in (self.check_blocks.model_extra or {}).values():
            if type(value) is model:
                return value
        raise KeyError(f"{model.__qualname__} is not the settings model of a registered check")

    # typed shortcuts to the built-in checks' blocks (the store and the UI read them too)
    @property
    def greylist(self) -> GreylistSettings:
        return self.check_block(GreylistSettings)

    @property
    def dnsbl(self) -> DnsblSettings:
        return self.check_block(DnsblSettings)

    @property
    def rdns(self) -> RdnsSettings:
        return self.check_block(RdnsSettings)

    @property
    def auth(self) -> AuthChecksSettings:
        return self.check_block(AuthChecksSettings)

    @property
    def barring(self) -> BarringSettings:
        return self.check_block(BarringSettings)

    @property
    def antivirus(self) -> AntivirusSettings:
        return self.check_block(AntivirusSettings)

    @field_validator("thresholds")
    @classmethod
    def _ordered(cls, v: ThresholdSettings) -> ThresholdSettings:
        given = [t for t in (v.spam, v.hold, v.reject) if t is not None]
        if any(not 0.0 < t <= 1.0 for t in given) or given != sorted(given):
            raise ValueError("thresholds must satisfy 0 < spam <= hold <= reject <= 1")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # the aliases come before the other variables (a deliberate short override wins) and
        # are hidden from pydantic-settings' own source, which would read MAILSIFT_MODEL as
        # the whole ``model`` block in JSON and fail on a folder name
        toml = _config_file()
        toml_source = (
            TomlConfigSettingsSource(settings_cls, toml_file=toml) if toml is not None else None
        )
        block_env = BlockEnvSource(settings_cls)
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            AliasEnvSource(settings_cls),
            block_env,
            CheckBlocksEnvSource(settings_cls, [init_settings, block_env, toml_source]),
        ]
        if toml_source is not None:
            sources.append(toml_source)
        return tuple(sources)

    # ---- derived locations -------------------------------------------------------------
    @property
    def store_url(self) -> str:
        return self.store.url or f"sqlite:///{self.paths.var_dir / 'mailsift.db'}"

    @property
    def mlflow_tracking_uri(self) -> str:
        return (
            self.mlflow.tracking_uri or f"sqlite:///{(self.paths.var_dir / 'mlflow.db').resolve()}"
        )

    @property
    def mlflow_artifact_location(self) -> str:
        return self.mlflow.artifact_location or str((self.paths.var_dir / "mlartifacts").resolve())

    @property
    def rules_cache_dir(self) -> Path:
        return self.rules.cache_dir or self.paths.var_dir / "cache" / "rules"

    @property
    def quarantine_dir(self) -> Path:
        return self.quarantine.spool_dir or self.paths.var_dir / "quarantine"

    @property
    def spool_dir(self) -> Path:
        return self.paths.var_dir / "spool"

    @property
    def default_model_dir(self) -> Path:
        return self.paths.models_dir / "default"


def _config_file() -> Path | None:
    explicit = os.environ.get("MAILSIFT_CONFIG")
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise FileNotFoundError(f"MAILSIFT_CONFIG={explicit} does not exist")
        return p
    local = Path("mailsift.toml")
    return local if local.is_file() else None


class AliasEnvSource(PydanticBaseSettingsSource):
    """The short aliases of ``ENV_ALIASES``, each setting one field of its block (empty
    values are ignored, as unset)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ below does the work

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for var, (block, name) in ENV_ALIASES.items():
            value = os.environ.get(var)
            if value:
                out.setdefault(block, {})[name] = value
        return out


class BlockEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source without the alias variables."""

    def _load_env_vars(self) -> dict[str, str | None]:
        hidden = {a if self.case_sensitive else a.lower() for a in ENV_ALIASES}
        return {k: v for k, v in super()._load_env_vars().items() if k not in hidden}


# The blocks of the built-in checks, whose models are in this module. Reading the settings
# imports the other check modules (the registry) only when something may belong to a check
# registered elsewhere: ``[checks] modules``, an unknown table or variable, a check name or
# symbol these do not explain. Each built-in check registers the same model for its block.
BUILTIN_CHECK_BLOCKS: dict[str, type[BaseModel]] = {
    "dnsbl": DnsblSettings,
    "rdns": RdnsSettings,
    "auth": AuthChecksSettings,
    "barring": BarringSettings,
    "antivirus": AntivirusSettings,
    "greylist": GreylistSettings,
}


def _load_check_registry(modules: list[str]) -> None:
    from mailsift.smtpd.checks.registry import load_registry

    load_registry(modules)


def _check_block_models() -> dict[str, type[BaseModel]]:
    """Block name -> settings model: the built-in blocks and those registered so far."""
    from mailsift.smtpd.checks.registry import BLOCKS

    return {**BUILTIN_CHECK_BLOCKS, **BLOCKS}


def _check_modules(data: dict[str, Any]) -> list[str]:
    """``checks.modules`` of raw settings data (a dict or a ChecksSettings)."""
    checks = data.get("checks")
    if isinstance(checks, ChecksSettings):
        return list(checks.modules)
    if isinstance(checks, dict):
        return [str(m) for m in checks.get("modules") or ()]
    return []


class _CheckBlocksBase(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore"
    )


class CheckBlocksEnvSource(PydanticBaseSettingsSource):
    """The environment variables of the registered checks' blocks (``MAILSIFT_DNSBL={...}``,
    ``MAILSIFT_DNSBL__ENABLED=false``), read as pydantic-settings reads a field's: through a
    settings class made of the registered blocks. The modules of ``[checks] modules`` (as
    `sources` give it: init values, environment, TOML file) are imported first, so their
    blocks count too."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        sources: list[PydanticBaseSettingsSource | None],
    ) -> None:
        super().__init__(settings_cls)
        self.sources = [s for s in sources if s is not None]

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ below does the work

    def __call__(self) -> dict[str, Any]:
        modules = [m for source in self.sources for m in _check_modules(source())]
        prefix = ENV_PREFIX.lower()
        fields = {
            *self.settings_cls.model_fields,
            *(a.lower().removeprefix(prefix) for a in ENV_ALIASES),
        }
        known = _check_block_models()
        named = {
            k.lower().removeprefix(prefix).split("__", 1)[0]
            for k in os.environ
            if k.lower().startswith(prefix)
        }
        if modules or named - fields - set(known) - {"config"}:
            _load_check_registry(modules)
            known = _check_block_models()
        found = BlockEnvSource(_blocks_env_class(tuple(known.items())))()
        return {k: v for k, v in found.items() if v is not None}


@lru_cache(maxsize=8)
def _blocks_env_class(blocks: tuple[tuple[str, type[BaseModel]], ...]) -> type[BaseSettings]:
    """A settings class with one optional field per check block, for the environment."""
    from pydantic import create_model

    fields: dict[str, Any] = {name: (model | None, None) for name, model in blocks}
    return create_model("CheckBlocksEnv", __base__=_CheckBlocksBase, **fields)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings: init overrides > short aliases > other environment variables >
    TOML file > defaults. A block given in ``overrides`` is merged field by field into what
    the other sources say."""
    return Settings(**overrides)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached). Tests build their own with load_settings()."""
    return load_settings()

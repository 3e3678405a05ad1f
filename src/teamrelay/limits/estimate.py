"""What a request may cost, guessed before it goes upstream, for reservations and tpm."""

from __future__ import annotations

from typing import Final, NamedTuple, Protocol

from teamrelay.body import RequestBody
from teamrelay.catalog import Operation, model_from_json
from teamrelay.ledger.prices import Prices
from teamrelay.tap import output_cap
from teamrelay.tap.usage import ToolCall

# Output tokens reserved when a request sets no `max_*tokens`, by what its operation makes;
# settled to the real usage when the answer ends. Text generation reserves
# RELAY_DEFAULT_OUTPUT_TOKENS (this by default: a short answer); embeddings and token counts
# make no output; other model calls (images, audio, video) make more, less predictably.
DEFAULT_OUTPUT_TOKENS: Final = 200
TEXT_OPERATIONS: Final = frozenset(
    {
        "createChatCompletion",
        "createCompletion",
        "createResponse",
        "beta_createResponse",
        "createRun",
        "createThreadAndRun",
    }
)
NO_OUTPUT_OPERATIONS: Final = frozenset(
    {"createEmbedding", "createModeration", "Getinputtokencounts", "beta_Getinputtokencounts"}
)
OTHER_OUTPUT_TOKENS: Final = 1024
# WebSocket sessions that run a model throughout (Realtime): their request names no model in a
# body and their length is unknown, so a budget reserves nothing for them (a cap already
# reached refuses them) and settles the usage of their responses when they end.
MODEL_SESSIONS: Final = frozenset({"x-realtimeWebSocket", "x-realtimeTranslationsWebSocket"})
_BYTES_PER_TOKEN: Final = 4


class Estimate(NamedTuple):
    """A tuple: one is made for every request of a key with limits."""

    input_tokens: int = 0
    output_tokens: int = 0
    usd: float = 0.0
    model: str | None = None
    # Dollars billed by the request's shape (images, speech characters, audio minutes), which
    # settle the reservation when the answer reports no tokens; `tier` its `service_tier`.
    billed: float | None = None
    tier: str | None = None
    # Dollars of `usd` reserved for the built-in tools the request offers (a call each).
    tools_usd: float = 0.0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


NOTHING: Final = Estimate()


def default_output(operation: Operation, text_tokens: int = DEFAULT_OUTPUT_TOKENS) -> int:
    """The output reserved for `operation` when its request sets no cap."""
    if operation.operation_id in TEXT_OPERATIONS:
        return text_tokens
    return 0 if operation.operation_id in NO_OUTPUT_OPERATIONS else OTHER_OUTPUT_TOKENS


def estimate(
    operation: Operation,
    body: bytes | RequestBody | None,
    prices: Prices,
    *,
    priced: bool = True,
    text_output: int = DEFAULT_OUTPUT_TOKENS,
) -> Estimate:
    """Operations that run no model cost nothing; a form (audio, images) reserves its
    operation's default output. `text_output` is RELAY_DEFAULT_OUTPUT_TOKENS.

    Without `priced` the body is not parsed for its model and `usd` stays 0 (tpm needs tokens
    only).
    """
    if not operation.runs_model or body is None:
        return NOTHING
    if isinstance(body, bytes):
        input_tokens = -(-len(body) // _BYTES_PER_TOKEN)
        output_tokens = output_cap(body) or default_output(operation, text_output)
        model = model_from_json(body) if priced else None
    else:
        input_tokens, output_tokens, model = 0, default_output(operation, text_output), None
    if not priced:
        return Estimate(input_tokens, output_tokens)
    usd = prices.cost(model, input_tokens, output_tokens, 0) or 0.0
    return Estimate(input_tokens, output_tokens, usd, model)


class Actual(NamedTuple):
    tokens: int
    usd: float


class Used(Protocol):
    """What a finished request reports: a ledger entry, or `accounting.Outcome` without one."""

    @property
    def input_tokens(self) -> int | None: ...
    @property
    def output_tokens(self) -> int | None: ...
    @property
    def cached_tokens(self) -> int | None: ...
    @property
    def model(self) -> str | None: ...
    @property
    def aborted(self) -> bool: ...
    @property
    def status(self) -> int: ...
    @property
    def usage_unknown(self) -> bool: ...
    @property
    def tools(self) -> tuple[ToolCall, ...]: ...
    @property
    def audio(self) -> tuple[int, int] | None: ...
    @property
    def tier(self) -> str | None: ...


def actual_of(used: Used, guess: Estimate, prices: Prices, *, priced: bool = True) -> Actual:
    """What the finished request used: its reported usage, else what the request's shape bills
    (images, speech, audio minutes) once it succeeded, else the guess for an answer that
    started and was cut off (generation is billed) or whose usage could not be read (unknown
    is not zero), else nothing (refused or failed). The built-in tool calls its answer
    showed are added to the dollars."""
    actual = _tokens_used(used, guess, prices, priced=priced)
    if priced and used.tools:
        tools = prices.tool_cost(used.tools, used.model or guess.model)
        return Actual(actual.tokens, actual.usd + tools)
    return actual


def _tokens_used(used: Used, guess: Estimate, prices: Prices, *, priced: bool) -> Actual:
    if used.input_tokens is not None or used.output_tokens is not None:
        used_in, used_out = used.input_tokens or 0, used.output_tokens or 0
        if not priced:
            return Actual(used_in + used_out, 0.0)
        model = used.model or guess.model
        cost = prices.cost(
            model, used_in, used_out, used.cached_tokens, used.tier or guess.tier, audio=used.audio
        )
        return Actual(used_in + used_out, cost if cost is not None else guess.billed or 0.0)
    if guess.billed is not None and used.status < 400:
        return Actual(0, guess.billed)
    if (used.aborted or used.usage_unknown) and used.status < 400:
        # The tool calls the answer showed replace the ones reserved.
        return Actual(guess.tokens, guess.usd - guess.tools_usd if used.tools else guess.usd)
    return Actual(0, 0.0)

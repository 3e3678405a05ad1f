"""A dollar cap sees every billable operation: images, speech and transcription spend it as
OpenAI bills them, a model without a price is refused before upstream, and the operator
finds the ledger's unpriced models with `teamrelay prices`."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import openai
import pytest
from sqlalchemy import insert, select
from typer.testing import CliRunner

from fakeupstream import FakeUpstream
from servers import relay_in_thread
from teamkeys import create_keys_async
from teamrelay.catalog import load_catalog
from teamrelay.cli import app
from teamrelay.config import ConfigError, load_settings
from teamrelay.ledger.db import create_engine, upgrade
from teamrelay.ledger.models import LedgerRow
from teamrelay.ledger.prices import load_prices
from teamrelay.limits.billed import AUDIO_BYTES_PER_SECOND, priced
from teamrelay.limits.estimate import Estimate, actual_of, estimate
from teamrelay.tap.usage import ToolCall

AUDIO = b"ID3" + bytes(240_000 - 3)  # 30 s at the reservation's 8,000 bytes a second


def _calls(upstream: FakeUpstream, path: str) -> int:
    return sum(record.path == path for record in upstream.log)


def test_images_speech_and_transcription_spend_the_dollar_cap_until_it_refuses(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/team.db"
    secrets = asyncio.run(create_keys_async(url, alice={"daily_usd": 0.10}))
    with (
        relay_in_thread(upstream.base_url, RELAY_DATABASE_URL=url) as relay,
        openai.OpenAI(base_url=relay.base_url, api_key=secrets["alice"], max_retries=0) as sdk,
    ):
        sdk.images.generate(model="dall-e-3", prompt="a lighthouse")  # $0.040
        sdk.audio.speech.create(model="tts-1", voice="alloy", input="x" * 1000).read()  # $0.015
        sdk.audio.transcriptions.create(model="whisper-1", file=("talk.mp3", AUDIO))  # $0.003
        with pytest.raises(openai.RateLimitError) as refused:  # $0.120 would pass $0.10
            sdk.images.generate(model="dall-e-3", prompt="a storm", quality="hd", size="1024x1792")
        sdk.images.generate(prompt="a gull", size="256x256")  # dall-e-2 by default: $0.016
        with pytest.raises(openai.RateLimitError):  # $0.074 spent, $0.040 more would pass
            sdk.images.generate(model="dall-e-3", prompt="a wave")
    assert refused.value.code == "insufficient_quota"
    assert "daily budget of $0.10" in refused.value.message
    assert _calls(upstream, "/v1/images/generations") == 2
    assert _calls(upstream, "/v1/audio/speech") == 1
    assert _calls(upstream, "/v1/audio/transcriptions") == 1
    costs = asyncio.run(_costs(url))
    assert costs["/v1/images/generations"] == pytest.approx([0.04, 0.016])  # refusals cost $0
    assert costs["/v1/audio/speech"] == pytest.approx([0.015])
    assert costs["/v1/audio/transcriptions"] == pytest.approx([AUDIO_COST], rel=0.01)
    usage = _usage_by_operation(url)  # what the operator sees: every call that passed, costed
    assert usage["createImage"]["requests"] == 4  # two passed, two refused
    assert usage["createImage"]["cost_usd"] == pytest.approx(0.056)
    assert usage["createSpeech"]["cost_usd"] == pytest.approx(0.015)
    assert usage["createTranscription"]["cost_usd"] == pytest.approx(AUDIO_COST, rel=0.01)
    total = usage["(total)"]["cost_usd"]
    assert total == pytest.approx(0.056 + 0.015 + AUDIO_COST, rel=0.001)


def _usage_by_operation(url: str) -> dict[str, dict[str, float]]:
    """`teamrelay usage --json --by operation`, its groups by operation and its total."""
    shown = CliRunner().invoke(
        app, ["usage", "--json", "--by", "operation"], env={"RELAY_DATABASE_URL": url}
    )
    assert shown.exit_code == 0, shown.output
    document = json.loads(shown.output)
    groups = {group["operation"]: group for group in document["groups"]}
    return groups | {"(total)": document["total"]}


AUDIO_COST = len(AUDIO) / AUDIO_BYTES_PER_SECOND / 60 * 0.006


async def _costs(url: str) -> dict[str, list[float]]:
    """The ledger's cost of each successful row, by path, oldest first."""
    engine = create_engine(url)
    query = (
        select(LedgerRow.path, LedgerRow.cost_usd)
        .where(LedgerRow.status == 200)
        .order_by(LedgerRow.ts)
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    await engine.dispose()
    costs: dict[str, list[float]] = {}
    for path, cost in rows:
        costs.setdefault(path, []).append(cost)
    return costs


def test_a_dollar_capped_key_is_refused_a_model_without_a_price(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/team.db"
    secrets = asyncio.run(create_keys_async(url, alice={"daily_usd": 5}, bob={"rpm": 100}))
    messages: list[dict[str, str]] = [{"role": "user", "content": "hello"}]
    with relay_in_thread(upstream.base_url, RELAY_DATABASE_URL=url) as relay:
        with openai.OpenAI(
            base_url=relay.base_url, api_key=secrets["alice"], max_retries=0
        ) as alice:
            with pytest.raises(openai.PermissionDeniedError) as refused:
                alice.chat.completions.create(model="team-tuned-7", messages=messages)  # type: ignore[arg-type]
            alice.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
        with openai.OpenAI(base_url=relay.base_url, api_key=secrets["bob"], max_retries=0) as bob:
            bob.chat.completions.create(model="team-tuned-7", messages=messages)  # type: ignore[arg-type]
    assert refused.value.status_code == 403
    assert refused.value.code == "model_not_priced"
    assert "'team-tuned-7'" in refused.value.message
    assert "RELAY_UNPRICED=allow" in refused.value.message
    assert _calls(upstream, "/v1/chat/completions") == 2  # alice's priced call and bob's


def test_relay_unpriced_allow_lets_a_dollar_capped_key_use_an_unpriced_model(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/team.db"
    secrets = asyncio.run(create_keys_async(url, alice={"daily_usd": 5}))
    with (
        relay_in_thread(upstream.base_url, RELAY_DATABASE_URL=url, RELAY_UNPRICED="allow") as relay,
        openai.OpenAI(base_url=relay.base_url, api_key=secrets["alice"], max_retries=0) as sdk,
    ):
        sdk.chat.completions.create(
            model="team-tuned-7",
            messages=[{"role": "user", "content": "hello"}],
        )
    assert _calls(upstream, "/v1/chat/completions") == 1


def test_teamrelay_prices_lists_the_ledgers_models_without_a_price(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/team.db"

    async def seed() -> None:
        await upgrade(url)
        engine = create_engine(url)
        row = {
            "ts": datetime.now(UTC),
            "method": "POST",
            "path": "/v1/chat/completions",
            "status": 200,
            "duration_ms": 1.0,
            "bytes_in": 1,
            "bytes_out": 1,
            "streamed": False,
            "aborted": False,
        }
        models = ["team-tuned-7", "team-tuned-7", "gpt-5-mini-2025-08-07", "dall-e-3"]
        async with engine.begin() as connection:
            await connection.execute(
                insert(LedgerRow),
                [row | {"relay_request_id": uuid.uuid4().hex, "model": m} for m in models],
            )
        await engine.dispose()

    asyncio.run(seed())
    runner = CliRunner()
    env = {"RELAY_DATABASE_URL": url, "COLUMNS": "250"}
    shown = runner.invoke(app, ["prices"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "whisper-1" in shown.output
    assert "2026-12-03" in shown.output
    assert "team-tuned-7" in shown.output.split("without a price")[1]
    assert "$10/1k calls" in shown.output  # built-in tools, with their checked date
    assert "2026-12-04" in shown.output
    result = runner.invoke(app, ["prices", "--json"], env=env)
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["unpriced"] == [{"model": "team-tuned-7", "requests": 2}]
    assert document["models"]["dall-e-3"]["per_image"]["hd/1024x1792"] == 0.12
    assert document["models"]["tts-1"]["source"].startswith("https://platform.openai.com/")
    assert document["tools"]["containers"]["per_container"]["4g"] == 0.12
    assert document["tools"]["web_search"]["checked"] == "2026-12-04"


@pytest.mark.parametrize(
    ("operation_id", "body", "usd"),
    [
        ("createImage", {"prompt": "p"}, 0.020),  # dall-e-2, 1024x1024
        ("createImage", {"prompt": "p", "output_format": "webp"}, 0.25),  # gpt-image-1, dearest
        ("createImage", {"model": "dall-e-3", "prompt": "p", "n": 3}, 0.12),
        ("createImage", {"model": "dall-e-3", "quality": "hd", "size": "1792x1024"}, 0.12),
        ("createImage", {"model": "gpt-image-1", "quality": "low", "size": "1024x1024"}, 0.011),
        ("createSpeech", {"model": "tts-1-hd", "input": "a" * 2000, "voice": "x"}, 0.06),
        ("createSpeech", {"model": "gpt-4o-mini-tts", "input": "a" * 900, "voice": "x"}, 0.015),
    ],
)
def test_requests_priced_by_their_shape_reserve_what_openai_bills(
    operation_id: str, body: dict[str, object], usd: float
) -> None:
    operation, prices = load_catalog().by_id[operation_id], load_prices()
    data = json.dumps(body).encode()
    guess = priced(operation, data, estimate(operation, data, prices), prices)
    assert guess.usd == pytest.approx(usd)
    assert guess.billed == pytest.approx(usd)


def test_transcription_reserves_minutes_from_the_upload_size() -> None:
    operation, prices = load_catalog().by_id["createTranscription"], load_prices()
    form = {"model": b"whisper-1"}
    sized = priced(operation, None, Estimate(), prices, form=form, length=60 * 8_000)
    assert AUDIO_BYTES_PER_SECOND == 8_000
    assert sized.usd == pytest.approx(0.006)
    unsized = priced(operation, None, Estimate(), prices, form=form)
    assert unsized.usd == pytest.approx(25 * 2**20 / 8_000 / 60 * 0.006)


class _Used:
    def __init__(self, input_tokens: int | None, output_tokens: int | None, status: int = 200):
        self.input_tokens, self.output_tokens, self.cached_tokens = input_tokens, output_tokens, 0
        self.model, self.aborted, self.status = None, False, status
        self.usage_unknown, self.tools, self.audio, self.tier = False, (), None, None


def test_settlement_takes_the_shape_price_unless_the_answer_counts_tokens() -> None:
    prices = load_prices()
    dalle = Estimate(usd=0.04, model="dall-e-3", billed=0.04)
    assert actual_of(_Used(None, None), dalle, prices).usd == pytest.approx(0.04)
    assert actual_of(_Used(None, None, status=400), dalle, prices).usd == 0.0
    gpt_image = Estimate(usd=0.25, model="gpt-image-1", billed=0.25)
    settled = actual_of(_Used(10, 4160), gpt_image, prices)
    assert settled.usd == pytest.approx((10 * 5.0 + 4160 * 40.0) / 1e6)


def test_flex_requests_are_priced_at_the_flex_rate() -> None:
    operation, prices = load_catalog().by_id["createResponse"], load_prices()
    standard = b'{"model":"o3","input":"hi"}'
    flex = b'{"model":"o3","input":"hi","service_tier":"flex"}'
    at_standard = priced(operation, standard, estimate(operation, standard, prices), prices)
    at_flex = priced(operation, flex, estimate(operation, flex, prices), prices)
    assert at_flex.tier == "flex"
    assert at_flex.usd == pytest.approx(
        prices.cost("o3", at_flex.input_tokens, at_flex.output_tokens, 0) * 0.5
    )
    assert at_standard.usd > at_flex.usd


def test_a_bad_relay_unpriced_stops_start_up_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("RELAY_UNPRICED", "maybe")
    with pytest.raises(ConfigError, match="RELAY_UNPRICED"):
        load_settings()


def test_a_key_without_a_cap_has_its_images_and_speech_costed_in_the_ledger(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/team.db"
    secrets = asyncio.run(create_keys_async(url, bob={}))
    with (
        relay_in_thread(upstream.base_url, RELAY_DATABASE_URL=url) as relay,
        openai.OpenAI(base_url=relay.base_url, api_key=secrets["bob"], max_retries=0) as sdk,
    ):
        sdk.images.generate(model="dall-e-3", prompt="a lighthouse", n=2, quality="hd")
        sdk.audio.speech.create(model="tts-1-hd", voice="alloy", input="y" * 500).read()
    costs = asyncio.run(_costs(url))
    assert costs["/v1/images/generations"] == pytest.approx([0.16])
    assert costs["/v1/audio/speech"] == pytest.approx([0.015])


def test_a_request_reserves_one_call_of_each_built_in_tool_it_offers() -> None:
    operation, prices = load_catalog().by_id["createResponse"], load_prices()
    tools = [
        {"type": "web_search_preview"},
        {"type": "file_search", "vector_store_ids": ["vs_1"]},
        {"type": "code_interpreter", "container": {"type": "auto", "memory_limit": "4g"}},
        {"type": "image_generation", "quality": "low", "size": "1024x1024"},
        {"type": "shell", "environment": {"type": "container_auto"}},
        {"type": "shell", "environment": {"type": "local"}},  # runs on the caller's side
        {"type": "function", "name": "lookup"},
    ]
    data = json.dumps({"model": "gpt-4.1", "input": "hi", "tools": tools}).encode()
    bare = estimate(operation, data, prices)
    guess = priced(operation, data, bare, prices)
    assert guess.tools_usd == pytest.approx(0.025 + 0.0025 + 0.12 + 0.011 + 0.03)
    assert guess.usd == pytest.approx(bare.usd + guess.tools_usd)
    chat = load_catalog().by_id["createChatCompletion"]
    search = b'{"model":"gpt-4o-search-preview","messages":[]}'
    assert priced(chat, search, estimate(chat, search, prices), prices).tools_usd == 0.025
    plain = b'{"model":"gpt-4o","messages":[]}'
    assert priced(chat, plain, estimate(chat, plain, prices), prices).tools_usd == 0.0


def test_settlement_takes_the_tool_calls_the_answer_showed_not_the_reserved_ones() -> None:
    prices = load_prices()
    guess = Estimate(10, 200, usd=0.05, model="gpt-4.1", tools_usd=0.04)
    used = _Used(10, 20)
    tokens = (10 * 2.0 + 20 * 8.0) / 1e6
    assert actual_of(used, guess, prices).usd == pytest.approx(tokens)  # offered, not used
    used.tools = (ToolCall("web_search"), ToolCall("web_search"))
    assert actual_of(used, guess, prices).usd == pytest.approx(tokens + 0.02)
    cut = _Used(None, None)
    cut.aborted = True
    assert actual_of(cut, guess, prices).usd == pytest.approx(0.05)  # nothing seen: reserved
    cut.tools = (ToolCall("file_search"),)
    assert actual_of(cut, guess, prices).usd == pytest.approx(0.01 + 0.0025)


def test_a_spoken_chat_answer_prices_its_audio_tokens_at_the_audio_rate(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/team.db"
    secrets = asyncio.run(create_keys_async(url, alice={"daily_usd": 1}))
    with (
        relay_in_thread(upstream.base_url, RELAY_DATABASE_URL=url) as relay,
        openai.OpenAI(base_url=relay.base_url, api_key=secrets["alice"], max_retries=0) as sdk,
    ):
        answer = sdk.chat.completions.create(
            model="gpt-audio",
            modalities=["text", "audio"],
            audio={"voice": "alloy", "format": "wav"},
            messages=[{"role": "user", "content": "say hello to the team"}],
        )
    assert answer.choices[0].message.audio is not None
    usage = answer.usage
    assert usage is not None
    assert usage.completion_tokens_details is not None
    spoken = usage.completion_tokens_details.audio_tokens or 0
    assert spoken > 0
    text_out = usage.completion_tokens - spoken
    billed = (usage.prompt_tokens * 2.50 + text_out * 10.00 + spoken * 64.00) / 1e6
    assert asyncio.run(_costs(url))["/v1/chat/completions"] == pytest.approx([billed])


@pytest.mark.parametrize(("tier", "factor"), [("flex", 0.5), ("priority", 1.75)])
def test_an_answer_costs_the_rate_of_the_tier_that_served_it_for_every_key(
    upstream: FakeUpstream, tmp_path: Path, tier: str, factor: float
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/team.db"
    secrets = asyncio.run(create_keys_async(url, alice={"daily_usd": 1}, bob={}))
    answers = []
    with relay_in_thread(upstream.base_url, RELAY_DATABASE_URL=url) as relay:
        for who in ("alice", "bob"):
            with openai.OpenAI(base_url=relay.base_url, api_key=secrets[who], max_retries=0) as sdk:
                answers.append(
                    sdk.responses.create(model="o3", input="think slowly", service_tier=tier)  # type: ignore[arg-type]
                )
    prices = load_prices()
    billed = []
    for answer in answers:
        assert answer.service_tier == tier
        assert answer.usage is not None
        full = prices.cost("o3", answer.usage.input_tokens, answer.usage.output_tokens, 0)
        assert full is not None
        billed.append(full * factor)
    assert asyncio.run(_costs(url))["/v1/responses"] == pytest.approx(billed)

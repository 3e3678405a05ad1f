"""Model prices: matching of model names, cost arithmetic, the operator's override file."""

from __future__ import annotations

from pathlib import Path

import pytest

from teamrelay.ledger.prices import (
    ModelPrice,
    Prices,
    PricesError,
    load_prices,
    transcription_seconds,
)
from teamrelay.tap.usage import CHAT_SEARCH, ToolCall


@pytest.fixture
def prices() -> Prices:
    return Prices(
        {
            "gpt-5": ModelPrice(input=1.25, cached_input=0.125, output=10.0),
            "gpt-5-mini": ModelPrice(input=0.25, cached_input=0.025, output=2.0),
            "gpt-4": ModelPrice(input=30.0, cached_input=30.0, output=60.0),
        }
    )


@pytest.mark.parametrize(
    ("model", "listed"),
    [
        ("gpt-5-mini", "gpt-5-mini"),
        ("gpt-5-mini-2025-08-07", "gpt-5-mini"),
        ("gpt-5-2025-08-07", "gpt-5"),
        ("gpt-4-0613", "gpt-4"),
        ("gpt-5-codex", "gpt-5"),
        ("gpt-5-mini-search-preview", "gpt-5-mini"),
    ],
)
def test_dated_snapshots_and_variants_take_the_listed_models_price(
    prices: Prices, model: str, listed: str
) -> None:
    assert prices.lookup(model) == prices.table[listed]


@pytest.mark.parametrize("model", [None, "", "gpt-50", "chatgpt-4o-latest", "gpt-5mini"])
def test_models_not_listed_have_no_price(prices: Prices, model: str | None) -> None:
    assert prices.lookup(model) is None


def test_cost_charges_cached_input_at_its_own_price_and_never_twice(prices: Prices) -> None:
    cost = prices.cost("gpt-5-mini-2025-08-07", 1_000, 500, 200)
    assert cost == pytest.approx((800 * 0.25 + 200 * 0.025 + 500 * 2.0) / 1e6)


def test_cost_is_unknown_without_tokens_or_price(prices: Prices) -> None:
    assert prices.cost("gpt-5", None, None, None) is None
    assert prices.cost("unknown-model", 10, 10, 0) is None
    assert prices.cost("gpt-5", 1_000_000, None, None) == pytest.approx(1.25)


def test_shipped_prices_load_and_are_sane() -> None:
    shipped = load_prices()
    assert {"gpt-5", "gpt-5-mini", "gpt-4.1", "gpt-4o-mini", "o3"} <= set(shipped.table)
    for name, price in shipped.table.items():
        assert price.checked, name
        assert (price.source or "").startswith("https://"), name
        if price.input is not None:
            assert price.cached_input is not None
            assert 0 <= price.cached_input <= price.input, name
        assert (price.output or 0) >= 0, name
        assert (
            price.bills_tokens
            or price.per_image
            or price.per_minute
            or (price.per_million_characters)
        ), name


def test_operator_file_overrides_and_extends_the_shipped_prices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = tmp_path / "prices.toml"
    own.write_text(
        '[models]\n"gpt-5-mini" = { input = 0.2, output = 1.5 }\n'
        '"team-model" = { input = 1, cached_input = 0.5, output = 2 }\n'
    )
    monkeypatch.setenv("RELAY_PRICES_FILE", str(own))
    prices = load_prices()
    assert prices.lookup("gpt-5-mini-2025-08-07") == ModelPrice(0.2, 0.2, 1.5)
    assert prices.lookup("team-model") == ModelPrice(1.0, 0.5, 2.0)
    assert prices.lookup("gpt-5") == load_prices(override=Path("/dev/null")).lookup("gpt-5")


@pytest.mark.parametrize(
    "content",
    [
        "[models\n",
        '[models]\n"m" = { input = -1, output = 1 }\n',
        '[models]\n"m" = { input = 1 }\n',
        '[models]\n"m" = { input = 1, output = 1, typo = 2 }\n',
        '[models]\n"m" = 3\n',
    ],
)
def test_a_bad_price_file_names_the_variable_and_the_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str
) -> None:
    own = tmp_path / "prices.toml"
    own.write_text(content)
    monkeypatch.setenv("RELAY_PRICES_FILE", str(own))
    with pytest.raises(PricesError, match="RELAY_PRICES_FILE"):
        load_prices()


def test_a_missing_price_file_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RELAY_PRICES_FILE", str(tmp_path / "absent.toml"))
    with pytest.raises(PricesError, match="cannot read"):
        load_prices()


def test_an_operator_file_prices_images_speech_and_audio_in_their_sections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = tmp_path / "prices.toml"
    own.write_text(
        '[image]\nchecked = "2026-11-30"\nsource = "https://example.test/contract"\n'
        '[image.models.dall-e-3]\nper_image = { "standard/1024x1024" = 0.03 }\n'
        '[speech.models]\n"tts-1" = { per_million_characters = 10 }\n'
        '[transcription.models]\n"team-whisper" = { per_minute = 0.004 }\n'
    )
    monkeypatch.setenv("RELAY_PRICES_FILE", str(own))
    prices = load_prices()
    dalle = prices.lookup("dall-e-3")
    assert dalle is not None
    assert (dalle.kind, dalle.checked, dalle.source) == (
        "image",
        "2026-11-30",
        "https://example.test/contract",
    )
    assert prices.images("dall-e-3", 2, None, "1024x1024") == pytest.approx(0.06)
    assert prices.characters("tts-1", 1_000_000) == pytest.approx(10.0)
    assert prices.minutes("team-whisper", 90) == pytest.approx(0.006)
    assert prices.images("dall-e-2", 1, None, None) == pytest.approx(0.02)  # shipped, kept


@pytest.mark.parametrize(
    ("content", "names"),
    [
        ('[image.models]\n"m" = { per_image = { "1024x1024" = 1 } }\n', "image.models.m.per_image"),
        ('[image.models]\n"m" = { per_image = { "hd/1024" = -1 } }\n', "image.models.m.per_image"),
        ('[speech.models]\n"m" = { voice = 1 }\n', "speech.models.m"),
        ('[speech.models]\n"m" = {}\n', "speech.models.m"),
        ('[video.models]\n"m" = { per_second = 1 }\n', "video"),
    ],
)
def test_a_bad_entry_of_any_section_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str, names: str
) -> None:
    own = tmp_path / "prices.toml"
    own.write_text(content)
    monkeypatch.setenv("RELAY_PRICES_FILE", str(own))
    with pytest.raises(PricesError, match=f"RELAY_PRICES_FILE.*{names}"):
        load_prices()


def test_shipped_images_take_openai_defaults_and_auto_takes_the_dearest() -> None:
    prices = load_prices()
    assert prices.images("dall-e-2", 1, None, "256x256") == pytest.approx(0.016)
    assert prices.images("dall-e-3", 1, None, None) == pytest.approx(0.04)  # standard 1024
    assert prices.images("dall-e-3", 1, "hd", None) == pytest.approx(0.08)
    assert prices.images("gpt-image-1", 1, "auto", "auto") == pytest.approx(0.25)
    assert prices.images("gpt-image-1-mini", 1, "low", "1024x1024") == pytest.approx(0.005)
    assert prices.images("gpt-5", 1, None, None) is None


def test_token_totals_of_audio_and_image_models_take_their_modality_price() -> None:
    prices = load_prices()
    assert prices.cost("gpt-4o-transcribe", 1_000_000, 0, 0) == pytest.approx(6.0)
    assert prices.cost("gpt-4o-mini-tts", 0, 1_000_000, 0) == pytest.approx(12.0)
    assert prices.cost("gpt-image-1", 1_000_000, 1_000_000, 0) == pytest.approx(45.0)
    assert prices.cost("gpt-realtime-2025-08-28", 1_000_000, 0, 1_000_000) == pytest.approx(0.4)
    assert prices.cost("o3", 1_000_000, 0, 0, "flex") == pytest.approx(1.0)
    assert prices.cost("tts-1", 10, 10, 0) is None  # priced per character, not tokens


def test_transcription_seconds_read_both_answer_shapes() -> None:
    assert transcription_seconds({"text": "hi", "duration": 12.5}) == 12.5
    assert transcription_seconds({"usage": {"type": "duration", "seconds": 7}}) == 7.0
    assert transcription_seconds({"usage": {"type": "tokens", "input_tokens": 3}}) is None
    assert transcription_seconds({"duration": True}) is None


def test_tool_calls_cost_their_listed_price() -> None:
    prices = load_prices()
    calls = [
        ToolCall("web_search"),
        ToolCall("web_search_preview"),
        ToolCall("web_search_preview", "reasoning"),
        ToolCall("file_search"),
        ToolCall("containers"),  # a 1 GB container unless the request asked for more
        ToolCall("containers", "16g"),
        ToolCall("containers", "3g"),  # not listed: the dearest
        ToolCall("image_generation", None, "low", "1024x1024"),
        ToolCall("image_generation", "gpt-image-1-mini", "high", "1536x1024"),
        ToolCall(CHAT_SEARCH, "gpt-4o-search-preview-2025-03-11"),
        ToolCall(CHAT_SEARCH, "team-search-model"),  # not a listed search model: no call price
        ToolCall("unknown_tool"),
    ]
    each = [prices.tool_cost([call]) for call in calls]
    assert each == pytest.approx(
        [0.01, 0.025, 0.01, 0.0025, 0.03, 0.48, 1.92, 0.011, 0.052, 0.025, 0.0, 0.0]
    )
    assert prices.tool_cost(calls) == pytest.approx(sum(each))
    assert prices.tools["web_search"].checked == "2026-12-04"


def test_an_operator_file_prices_tools_and_a_bad_tool_entry_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = tmp_path / "prices.toml"
    own.write_text('[tools.web_search]\nper_1k_calls = 8\nsource = "https://example.test/deal"\n')
    monkeypatch.setenv("RELAY_PRICES_FILE", str(own))
    prices = load_prices()
    assert prices.tool_cost([ToolCall("web_search")]) == pytest.approx(0.008)
    assert prices.tools["web_search"].source == "https://example.test/deal"
    assert prices.tool_cost([ToolCall("file_search")]) == pytest.approx(0.0025)  # shipped, kept
    for bad, named in (
        ("[tools.web_search]\nper_call = 1\n", "tools.web_search"),
        ('[tools.containers]\nper_container = { "1g" = -1 }\n', "per_container.1g"),
        ("[tools.x]\nnote = 'no price'\n", "tools.x"),
        ("[tools.x]\nper_1k_calls = 1\nchat_models = 'gpt'\n", "chat_models"),
    ):
        own.write_text(bad)
        with pytest.raises(PricesError, match=named):
            load_prices()


def test_audio_and_text_tokens_split_by_the_answer_take_their_own_rates() -> None:
    prices = load_prices()
    text_only = prices.cost("gpt-realtime", 1_000_000, 1_000_000, 0, audio=(0, 0))
    assert text_only == pytest.approx(4.0 + 16.0)
    voice = prices.cost("gpt-realtime", 1_000_000, 1_000_000, 0, audio=(1_000_000, 1_000_000))
    assert voice == pytest.approx(32.0 + 64.0)
    assert voice == prices.cost("gpt-realtime", 1_000_000, 1_000_000, 0)  # unsplit: as audio
    mixed = prices.cost("gpt-realtime", 1_000_000, 500_000, 200_000, audio=(600_000, 100_000))
    assert mixed == pytest.approx(0.2 * 0.4 + 0.2 * 4.0 + 0.6 * 32.0 + 0.4 * 16.0 + 0.1 * 64.0)
    assert prices.cost("gpt-4o-transcribe", 1_000, 100, 0, audio=(900, 0)) == pytest.approx(
        (100 * 2.5 + 900 * 6.0 + 100 * 10.0) / 1e6
    )


def test_priority_processing_costs_its_listed_premium() -> None:
    prices = load_prices()
    assert prices.cost("gpt-4.1-2025-04-14", 1_000_000, 1_000_000, 0, "priority") == (
        pytest.approx(3.50 + 14.00)
    )
    assert prices.cost("gpt-5", 1_000_000, 0, 1_000_000, "priority") == pytest.approx(0.25)
    assert prices.cost("gpt-4o-mini", 1_000_000, 1_000_000, 0, "priority") == pytest.approx(
        0.25 + 1.00, rel=1e-4
    )
    assert prices.cost("gpt-5-nano", 1_000_000, 0, 0, "priority") == pytest.approx(0.05)


def test_a_web_search_by_a_mini_model_bills_its_fixed_block_of_input_tokens() -> None:
    prices = load_prices()
    search = [ToolCall("web_search")]
    assert prices.tool_cost(search, "gpt-4.1-mini-2025-04-14") == pytest.approx(
        0.01 + 8000 * 0.40 / 1e6
    )
    assert prices.tool_cost(search, "gpt-4o-mini") == pytest.approx(0.01 + 8000 * 0.15 / 1e6)
    assert prices.tool_cost(search, "gpt-4.1") == pytest.approx(0.01)
    assert prices.tool_cost(search) == pytest.approx(0.01)
    assert prices.tool_cost([ToolCall("web_search_preview")], "gpt-4o-mini") == 0.025


def test_the_current_models_are_priced() -> None:
    prices = load_prices()
    assert prices.cost("gpt-5.5-2026-04-23", 1_000_000, 1_000_000, 0) == pytest.approx(35.0)
    assert prices.cost("gpt-5.4-mini", 1_000_000, 0, 1_000_000) == pytest.approx(0.075)
    assert prices.cost("gpt-5.5", 1_000_000, 0, 0, "priority") == pytest.approx(12.5)
    assert prices.images("gpt-image-1.5", 1, "high", "1536x1024") == pytest.approx(0.2)
    for model in ("gpt-5.2", "gpt-5.4", "gpt-5.4-nano", "gpt-5.4-pro", "gpt-5.5-pro"):
        price = prices.lookup(model)
        assert price is not None
        assert price.checked == "2026-12-04"
